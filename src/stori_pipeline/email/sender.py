"""One ``Transactions Summarized`` event -> one email through SES (SPEC §5, §6).

:func:`send_summary_email` orchestrates the pieces: parse the event detail, look the user up,
fetch the operator's template (cached), render, build MIME, and ``SendEmail`` with Raw content
(SESv2). Clients are injected; when one is not passed it is built from an aioboto3 session and
closed before returning, so everything loop-bound lives inside the caller's ``asyncio.run``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aioboto3

from stori_pipeline.email.claim_check import parse_summary_reference, resolve_summary_detail
from stori_pipeline.email.clients import DynamoDBClient, S3Client, SESv2Client
from stori_pipeline.email.errors import InvalidSummaryEventError
from stori_pipeline.email.mime import build_mime, parse_sender
from stori_pipeline.email.recipients import lookup_user
from stori_pipeline.email.render import TemplateProblemReporter, render_summary_email
from stori_pipeline.email.ses import send_raw
from stori_pipeline.email.template_store import TEMPLATE_CACHE, TemplateCache, fetch_template
from stori_pipeline.errors import ConfigurationError
from stori_pipeline.settings import EmailSettings
from stori_pipeline.summary import AccountSummary

__all__ = ["SentEmail", "SummaryEvent", "parse_summary_detail", "send_summary_email"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SummaryEvent:
    """The parts of SPEC §5's detail the email needs."""

    import_id: str
    summary: AccountSummary


@dataclass(frozen=True, slots=True)
class SentEmail:
    """What was sent: SES's message id, to whom, for which import, with which template."""

    message_id: str
    recipient: str
    account_id: str
    import_id: str
    template_source: str

    def to_json(self) -> dict[str, str]:
        """A JSON-friendly mapping (the handler's result, stored by idempotency)."""
        return {
            "messageId": self.message_id,
            "recipient": self.recipient,
            "accountId": self.account_id,
            "importId": self.import_id,
            "templateSource": self.template_source,
        }


def parse_summary_detail(detail: Mapping[str, Any]) -> SummaryEvent:
    """Validate SPEC §5's detail; raises :class:`InvalidSummaryEventError` (permanent)."""
    if not isinstance(detail, Mapping):
        raise InvalidSummaryEventError("detail is not an object")
    if detail.get("schemaVersion") != 1:
        raise InvalidSummaryEventError(f"unsupported schemaVersion {detail.get('schemaVersion')!r}")
    import_id = detail.get("importId")
    if not isinstance(import_id, str) or not import_id:
        raise InvalidSummaryEventError("importId is missing")
    raw_summary = detail.get("summary")
    if not isinstance(raw_summary, Mapping):
        raise InvalidSummaryEventError("summary is missing")
    try:
        summary = AccountSummary.from_json(raw_summary)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise InvalidSummaryEventError(f"summary is malformed: {exc!r}") from exc
    if not 1 <= len(summary.account_id) <= 64:
        raise InvalidSummaryEventError("summary.accountId is invalid")
    if any(not 1 <= m.month <= 12 for m in summary.months):
        raise InvalidSummaryEventError("a month is out of range")
    return SummaryEvent(import_id, summary)


async def _open(stack: contextlib.AsyncExitStack, session: aioboto3.Session, service: str) -> Any:  # noqa: ANN401 - an untyped aioboto3 client
    return await stack.enter_async_context(session.client(service))


async def send_summary_email(  # noqa: PLR0913 - each client is its own injection seam
    detail: Mapping[str, Any],
    *,
    settings: EmailSettings,
    dynamodb: DynamoDBClient | None = None,
    s3: S3Client | None = None,
    ses: SESv2Client | None = None,
    session: aioboto3.Session | None = None,
    template_cache: TemplateCache = TEMPLATE_CACHE,
    on_template_problem: TemplateProblemReporter | None = None,
) -> SentEmail:
    """Send the summary email for one ``Transactions Summarized`` event detail.

    Args:
        detail: The EventBridge event's ``detail`` (SPEC §5), ``schemaVersion`` 1, or 2 with
            the summary claim-checked in S3 (read with the ``s3`` client).
        settings: Tables, bucket, sender and subject (``EmailSettings.from_env()``).
        dynamodb: An aioboto3 DynamoDB client (built from ``session`` when ``None``).
        s3: An aioboto3 S3 client (built when ``None``).
        ses: An aioboto3 SESv2 client (built when ``None``).
        session: The aioboto3 session to build missing clients from (a new one when ``None``).
        template_cache: Where the S3 template is cached between invocations.
        on_template_problem: Told when the S3 template is missing or broken (a metric).

    Raises:
        InvalidSummaryEventError: The detail is malformed (permanent).
        RecipientError: Unknown account, no valid email, or SES refused the message or the
            address (``EmailRejectedError``) (permanent).
        ConfigurationError: ``SENDER_EMAIL`` is not an address.
        AwsOperationError: DynamoDB, S3 or SES failed (transient: let the invocation retry;
            SES throttling and quotas are first retried here, ``RetriesExhaustedError``).
    """
    # A version 2 (claim-check) detail is checked now and read once S3 is at hand.
    event = parse_summary_detail(detail) if parse_summary_reference(detail) is None else None
    try:
        sender = parse_sender(settings.sender_email)
    except ValueError as exc:
        raise ConfigurationError([f"SENDER_EMAIL: {exc}"]) from exc

    async with contextlib.AsyncExitStack() as stack:
        if dynamodb is None or s3 is None or ses is None:
            session = session or aioboto3.Session()
        users = dynamodb or await _open(stack, session, "dynamodb")
        objects = s3 or await _open(stack, session, "s3")
        mail = ses or await _open(stack, session, "sesv2")

        if event is None:
            event = parse_summary_detail(await resolve_summary_detail(detail, objects))
        account_id = event.summary.account_id
        user = await lookup_user(users, table=settings.users_table, account_id=account_id)
        template = await fetch_template(
            objects,
            bucket=settings.templates_bucket,
            key=settings.template_key,
            cache=template_cache,
            on_problem=on_template_problem,
        )
        rendered = render_summary_email(
            event.summary,
            user,
            template,
            subject=settings.email_subject,
            presentation=settings.presentation,
            template_label=f"s3://{settings.templates_bucket}/{settings.template_key}",
            on_template_problem=on_template_problem,
        )
        raw = build_mime(
            rendered, sender=sender, recipient_email=user.email, recipient_name=user.name
        )
        message_id = await send_raw(
            mail, sender=str(sender.addr_spec), recipient=user.email, raw=raw
        )

    sent = SentEmail(message_id, user.email, account_id, event.import_id, rendered.template_source)
    logger.info(
        "sent summary email %s for account %s (import %s, template %s, %d bytes)",
        message_id,
        account_id,
        event.import_id,
        rendered.template_source,
        len(raw),
    )
    return sent
