"""Lambda entrypoint of ``process-large-transaction``: one step of the distributed workflow.

Each task of the state machine (``statemachine/ingest.asl.json``) invokes this function with
``{"step": …, "job": …, "plan": …, "item": …}``; :func:`stori_pipeline.scaleout.run_step`
does the work in one ``asyncio.run``. Thin on purpose, like the other two handlers: settings
from the environment per invocation, no client or configuration at import time.

Failure policy: every error raises. Step Functions retries the task with backoff (the
state machine's ``Retry``), except for permanent ones (``ObjectGoneError``, ``StepError``,
``SplitError``), and a failed execution ends in its dead-letter queue.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from stori_pipeline.scaleout import run_with_session
from stori_pipeline.settings import ScaleOutSettings

SERVICE = "process-large-transaction"
logger = Logger(service=SERVICE)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:  # noqa: ARG001
    """Run one step of the workflow and return its small result (far below 256 KB)."""
    settings = ScaleOutSettings.from_env()
    raw_job = event.get("job")
    job: dict[str, Any] = raw_job if isinstance(raw_job, dict) else {}
    logger.append_keys(step=event.get("step"), importId=job.get("importId"), key=job.get("key"))
    try:
        result = asyncio.run(run_with_session(event, settings=settings))
    except Exception:
        logger.exception("step failed")
        raise
    logger.info("step done", extra={"result": result})
    return result
