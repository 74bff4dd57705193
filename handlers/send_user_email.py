"""Lambda entrypoint of ``send-user-email``: a ``Transactions Summarized`` event -> one email.

Thin on purpose: parse, read settings, run :func:`stori_pipeline.email.send_summary_email` in
one ``asyncio.run``, and map the outcome (SPEC §6, §7):

- success -> ``{"status": "sent", ...}``;
- a permanent error (malformed event, unknown account, invalid address) -> logged, counted,
  and returned as ``{"status": "failed", "reason": ...}`` without raising, so Lambda does not
  burn retries on data no retry can fix;
- a transient AWS error -> raised, so Lambda retries and finally sends the event to the DLQ.

Powertools idempotency wraps the synchronous part (it does not support coroutines), keyed on
``detail.importId`` + ``detail.summary.accountId``: a redelivered event returns the stored
result instead of sending a second email. The persistence layer is created on the first
invocation (the table name is configuration, never read at import time) and reused while warm.

Cold start: the module imports only Powertools (whose idempotency store needs boto3) and the
pure parts of the library; the email stack (Jinja2, css-inline, aioboto3/aiohttp) is imported by
the first invocation: that moves its cost out of the init phase, it does not remove it
(``bench/cold_start.py`` measures both).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from stori_pipeline.errors import PermanentError
from stori_pipeline.settings import EmailSettings, metrics_namespace

if TYPE_CHECKING:
    from stori_pipeline.email import TemplateProblem

logger = Logger(service="send-user-email")
# The namespace is set per invocation from the environment (settings.metrics_namespace),
# like the ingest's: an explicit namespace here would override the template's.
metrics = Metrics(service="send-user-email")

# One email per (import, account): importId is stable for one object version (SPEC §5). A
# schemaVersion 2 (claim-check) detail names its account at the top; for version 1 the key
# is the same [importId, accountId] as before, so records written earlier still match.
IDEMPOTENCY_KEY = "[detail.importId, detail.summary.accountId || detail.accountId]"


@functools.cache
def _persistence(table: str) -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(table_name=table)


@functools.cache
def _session() -> Any:  # noqa: ANN401 - an aioboto3.Session, imported on first use
    """One aioboto3 session per warm process, built on first use.

    A new session re-reads botocore's endpoint and service models (megabytes of JSON) for
    its clients: per invocation that was most of the function's CPU time. Clients are still
    opened per invocation, inside its event loop.
    """
    import aioboto3  # noqa: PLC0415 - deferred (cold start)

    return aioboto3.Session()


@functools.cache
def _route_library_logs() -> None:
    # The library logs through stdlib logging; give it the Powertools JSON format.
    copy_config_to_registered_loggers(source_logger=logger, include={"stori_pipeline"})


def _template_fallback(problem: TemplateProblem) -> None:
    """Count every time the operator's template could not be used (alarm on it)."""
    metrics.add_metric(name="EmailTemplateFallback", unit=MetricUnit.Count, value=1)
    metrics.add_metadata(key="templateProblem", value=problem.reason)


def _send(event: dict[str, Any], settings: EmailSettings) -> dict[str, Any]:
    # Deferred: Jinja2, css-inline and aioboto3/aiohttp were half of this module's import time.
    import asyncio  # noqa: PLC0415

    from stori_pipeline.email import send_summary_email  # noqa: PLC0415
    from stori_pipeline.email.claim_check import detail_account_id  # noqa: PLC0415

    detail = event["detail"]
    try:
        sent = asyncio.run(
            send_summary_email(
                detail,
                settings=settings,
                session=_session(),
                on_template_problem=_template_fallback,
            )
        )
    except PermanentError as exc:
        reason = getattr(exc, "code", type(exc).__name__)
        logger.error(  # noqa: TRY400 - an expected outcome, not a crash: no traceback
            "summary email not sent (permanent, not retried)",
            extra={
                "reason": reason,
                "error": str(exc),
                "importId": detail.get("importId"),
                "accountId": detail_account_id(detail),
            },
        )
        metrics.add_metric(name="EmailPermanentFailure", unit=MetricUnit.Count, value=1)
        return {
            "status": "failed",
            "reason": reason,
            "importId": detail.get("importId"),
            "accountId": detail_account_id(detail),
        }
    metrics.add_metric(name="EmailSent", unit=MetricUnit.Count, value=1)
    return {"status": "sent", **sent.to_json()}


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Send the summary email for one EventBridge ``Transactions Summarized`` event."""
    metrics.namespace = metrics_namespace()
    _route_library_logs()
    metrics.add_metric(name="SummaryEventReceived", unit=MetricUnit.Count, value=1)
    from stori_pipeline.email import parse_summary_detail  # noqa: PLC0415 - see _send
    from stori_pipeline.email.claim_check import parse_summary_reference  # noqa: PLC0415

    settings = EmailSettings.from_env()
    detail = event.get("detail")
    try:
        checked = detail if isinstance(detail, dict) else {}
        if parse_summary_reference(checked) is None:
            parse_summary_detail(checked)
    except PermanentError as exc:
        # Without importId/accountId there is no idempotency key; reject before that layer.
        logger.error(  # noqa: TRY400 - an expected outcome, not a crash: no traceback
            "malformed summary event (not retried)", extra={"error": str(exc)}
        )
        metrics.add_metric(name="EmailPermanentFailure", unit=MetricUnit.Count, value=1)
        return {"status": "failed", "reason": getattr(exc, "code", "invalid_event")}

    config = IdempotencyConfig(event_key_jmespath=IDEMPOTENCY_KEY, raise_on_no_idempotency_key=True)
    config.register_lambda_context(context)
    send_once = idempotent_function(
        data_keyword_argument="event",
        persistence_store=_persistence(settings.idempotency_table),
        config=config,
    )(_send)
    result: dict[str, Any] = send_once(event=event, settings=settings)
    return result
