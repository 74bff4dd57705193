"""Lambda entrypoint of ``process-user-transaction`` (EventBridge S3 "Object Created").

Thin on purpose: parse the event, read settings from the environment, guard with Powertools
idempotency, run :func:`stori_pipeline.ingest.ingest_object` in one ``asyncio.run``, and turn
its result into logs and metrics. Nothing that reads configuration or opens a connection runs
at import time: the idempotency store's boto3 client is built on first use and then reused
by warm invocations (``_persistence`` is cached per table name).

Failure policy (SPEC §7): a configuration error or a transient AWS failure raises, so Lambda
retries and then dead-letters the event; a permanent input problem (malformed event, object
gone, file rejected) is logged and returned, because no retry can fix it.

Cold start: the module imports only Powertools (whose idempotency store needs boto3) and the
pure parts of the library; the ingest stack (aiobotocore, aiohttp, the adapters) is imported by
the first invocation: that moves its cost out of the init phase, it does not remove it
(``bench/cold_start.py`` measures both).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from stori_pipeline.errors import PermanentError, StoriPipelineError
from stori_pipeline.idempotency import (
    INGEST_EVENT_KEY_JMESPATH,
    INGEST_KEY_PREFIX,
    INGEST_TTL_SECONDS,
)
from stori_pipeline.settings import IngestSettings, metrics_namespace

if TYPE_CHECKING:
    from stori_pipeline.ingest import ObjectCreated

SERVICE = "process-user-transaction"
# Defined once in stori_pipeline.idempotency: `stori-pipeline reprocess` computes the same ids.
EVENT_KEY_JMESPATH = INGEST_EVENT_KEY_JMESPATH
IDEMPOTENCY_TTL_SECONDS = INGEST_TTL_SECONDS

# A Logger holds no connection and reads nothing but the log level; one per process keeps
# the bound keys in one place.
logger = Logger(service=SERVICE)


@functools.cache
def _persistence(table_name: str) -> DynamoDBPersistenceLayer:
    """The idempotency store, built on first use (it creates a boto3 client)."""
    return DynamoDBPersistenceLayer(table_name=table_name)


def _metrics(result: dict[str, Any]) -> None:
    metrics = Metrics(namespace=metrics_namespace(), service=SERVICE)
    metrics.add_metric(name="RowsRead", unit=MetricUnit.Count, value=result["rowsRead"])
    metrics.add_metric(name="RowsAccepted", unit=MetricUnit.Count, value=result["rowsAccepted"])
    metrics.add_metric(name="RowsRejected", unit=MetricUnit.Count, value=result["rowsRejected"])
    metrics.add_metric(name="ItemsWritten", unit=MetricUnit.Count, value=result["itemsWritten"])
    metrics.add_metric(
        name="EventsPublished", unit=MetricUnit.Count, value=result["eventsPublished"]
    )
    metrics.add_metric(
        name="IngestDuration", unit=MetricUnit.Seconds, value=result["durationSeconds"]
    )
    if result["fileError"]:
        metrics.add_metric(name="FilesRejected", unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()


async def _start_workflow(target: ObjectCreated, settings: IngestSettings) -> dict[str, Any]:
    # Deferred like the ingest's imports (cold start): only large objects need these.
    import aioboto3  # noqa: PLC0415

    from stori_pipeline.scaleout.start import start_workflow  # noqa: PLC0415

    session = aioboto3.Session()
    async with session.client("s3") as s3, session.client("stepfunctions") as sfn:
        return await start_workflow(
            target, state_machine_arn=settings.state_machine_arn, s3=s3, stepfunctions=sfn
        )


def _route(target: ObjectCreated, settings: IngestSettings) -> dict[str, Any]:
    """Objects of at least LARGE_OBJECT_BYTES go to the distributed workflow, others here."""
    if not settings.routes_to_workflow(target.size):
        return _ingest(target, settings)
    import asyncio  # noqa: PLC0415 - deferred with the rest (cold start)

    try:
        started = asyncio.run(_start_workflow(target, settings))
    except PermanentError as exc:
        logger.warning("object not processed", extra={"reason": str(exc)})
        return {"status": "skipped", "reason": str(exc)}
    except StoriPipelineError:
        logger.exception("could not start the workflow; the invocation will be retried")
        raise
    logger.info("object routed to the distributed workflow", extra=started)
    return started


def _ingest(target: ObjectCreated, settings: IngestSettings) -> dict[str, Any]:
    # Deferred: aiobotocore and aiohttp were half of this module's import time (cold start).
    import asyncio  # noqa: PLC0415

    from stori_pipeline.ingest import ingest_object  # noqa: PLC0415

    try:
        result = asyncio.run(
            ingest_object(
                target.bucket,
                target.keys,
                target.etag,
                settings=settings,
                version_id=target.version_id,
                sequencer=target.sequencer,
            )
        )
    except PermanentError as exc:
        logger.warning("object not processed", extra={"reason": str(exc)})
        # bucket and key too: this result is what the idempotency record (and `status`) keeps.
        return {
            "status": "skipped",
            "reason": str(exc),
            "bucket": target.bucket,
            "key": target.raw_key,
            "etag": target.etag,
        }
    except StoriPipelineError:
        # Transient (retries exhausted) or unexpected AWS failure: log it structured, then
        # fail the invocation so Lambda retries it and finally dead-letters the event.
        logger.exception("ingest failed; the invocation will be retried")
        raise
    logger.append_keys(key=result.key, importId=result.import_id)
    summary = result.to_json()
    if result.file_error:
        logger.warning("file rejected", extra={"fileError": result.file_error, **summary})
    else:
        logger.info("object ingested", extra=summary)
    if result.events_referenced:
        # Not an error: these summaries were too large for an event and went by claim check.
        logger.info(
            "summaries sent by reference (schemaVersion 2)",
            extra={"accounts": result.events_referenced},
        )
    _metrics(summary)
    return {"status": "processed", "path": "single", "ranges": None, **summary}


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Ingest the object an S3 "Object Created" event names, at most once per version."""
    from stori_pipeline.ingest import parse_object_created  # noqa: PLC0415 - see _ingest

    settings = IngestSettings.from_env()  # ConfigurationError: fail loudly, every problem
    try:
        target = parse_object_created(event)
    except PermanentError as exc:
        logger.warning("not an S3 Object Created event", extra={"reason": str(exc)})
        return {"status": "ignored", "reason": str(exc)}
    # The raw key until the object is opened: only then is it known which decoding exists.
    logger.append_keys(bucket=target.bucket, key=target.raw_key)

    config = IdempotencyConfig(
        event_key_jmespath=EVENT_KEY_JMESPATH,
        raise_on_no_idempotency_key=True,
        expires_after_seconds=IDEMPOTENCY_TTL_SECONDS,
    )

    # Decorated per call so the store is built lazily; the decoration itself is cheap.
    @idempotent(
        config=config,
        persistence_store=_persistence(settings.idempotency_table),
        key_prefix=INGEST_KEY_PREFIX,
    )
    def process(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:  # noqa: ARG001
        return _route(target, settings)

    response: dict[str, Any] = process(event, context)
    return response
