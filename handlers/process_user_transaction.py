"""Lambda entrypoint of ``process-user-transaction`` (EventBridge S3 "Object Created").

Thin on purpose: parse the event, read settings from the environment, guard with Powertools
idempotency, run :func:`stori_pipeline.ingest.ingest_object` in one ``asyncio.run``, and turn
its result into logs and metrics. Nothing that reads configuration or opens a connection runs
at import time: the idempotency store's boto3 client is built on first use and then reused
by warm invocations (``_persistence`` is cached per table name).

Failure policy (SPEC §7): a configuration error or a transient AWS failure raises, so Lambda
retries and then dead-letters the event; a permanent input problem (malformed event, object
gone, file rejected) is logged and returned, because no retry can fix it.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from stori_pipeline.errors import PermanentError, StoriPipelineError
from stori_pipeline.ingest import ObjectCreated, ingest_object, parse_object_created
from stori_pipeline.settings import IngestSettings, metrics_namespace

SERVICE = "process-user-transaction"
# The stable fields of one object version; moto spells the ETag "eTag", AWS "etag".
EVENT_KEY_JMESPATH = (
    '[detail.bucket.name, detail.object.key, detail.object.etag || detail.object."eTag"]'
)
# S3 and EventBridge redeliver within minutes; a day covers that with a wide margin and lets
# an operator deliberately re-run an object the next day.
IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60

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


def _ingest(target: ObjectCreated, settings: IngestSettings) -> dict[str, Any]:
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
        return {"status": "skipped", "reason": str(exc)}
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
    return {"status": "processed", **summary}


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Ingest the object an S3 "Object Created" event names, at most once per version."""
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
        key_prefix=SERVICE,
    )
    def process(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:  # noqa: ARG001
        return _ingest(target, settings)

    response: dict[str, Any] = process(event, context)
    return response
