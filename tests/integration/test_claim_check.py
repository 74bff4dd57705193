"""Every account gets its event and its email, however large its summary (SPEC §5 claim check).

One account with a transaction in every month of 1900-2100 has 2,412 months: its summary is
~360 KB, beyond EventBridge's 256 KB entry limit. It is stored under ``summaries/`` and the event
(``schemaVersion`` 2) references it; the email function reads it and sends the email.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from handlers.process_user_transaction import handler as ingest_handler
from stori_pipeline.email import InvalidSummaryEventError, TemplateCache, send_summary_email
from stori_pipeline.ingest.events import MAX_ENTRY_BYTES
from stori_pipeline.settings import EmailSettings
from tests.integration.conftest import EmailResources
from tests.integration.ingest_stack import FakeLambdaContext, IngestStack
from tests.integration.test_email_aws import sent_messages

MONTHS = [(year, month) for year in range(1900, 2101) for month in range(1, 13)]


def every_month_file() -> bytes:
    """Account Big: one row in each of the 2,412 months; account Small: one row."""
    rows = [f"{n},{y}-{m:02d}-01,{n % 7 - 3}.50,Big" for n, (y, m) in enumerate(MONTHS)]
    rows.append("1,7/15,+1.00,Small")
    return ("TransactionId,Date,Amount,AccountId\n" + "\n".join(rows) + "\n").encode()


pytestmark = pytest.mark.usefixtures("no_backoff_sleeps")  # retry backoffs never sleep


@pytest.fixture
def ingested(ingest_stack: IngestStack) -> dict[str, dict[str, Any]]:
    """The file ingested by the handler; its events by account."""
    response = ingest_handler(
        ingest_stack.upload("incoming/many/months.csv", every_month_file()), FakeLambdaContext()
    )
    assert response["eventsReferenced"] == ["Big"]
    events = ingest_stack.summary_events(expected=2)
    return {e["detail"].get("accountId") or e["detail"]["summary"]["accountId"]: e for e in events}


@pytest.fixture
def mail(email_resources: EmailResources, unique: str) -> tuple[EmailSettings, str]:
    """Users (Big -> an address), templates bucket, verified sender; the recipient."""
    recipient = f"big-{unique}@example.com"
    return email_resources({"Big": {"Email": recipient, "Name": "Big"}}), recipient


def test_an_oversized_summary_is_sent_by_reference_and_a_small_one_inline(
    ingest_stack: IngestStack, ingested: dict[str, dict[str, Any]]
) -> None:
    """Big's event is version 2 and names the stored summary, in full; Small's stays version 1."""
    big, small = ingested["Big"]["detail"], ingested["Small"]["detail"]

    assert small["schemaVersion"] == 1
    assert small["summary"]["transactionCount"] == 1
    assert big["schemaVersion"] == 2
    assert "summary" not in big
    ref = big["summaryRef"]
    assert ref["bucket"] == ingest_stack.bucket
    assert ref["key"] == f"summaries/{big['importId']}/Big.json"
    stored = json.loads(ingest_stack.object_text(ref["key"]) or "null")
    assert ref["bytes"] > MAX_ENTRY_BYTES
    assert stored["accountId"] == "Big"
    assert [(m["year"], m["month"]) for m in stored["months"]] == MONTHS
    assert len(json.dumps(big)) < 4096


# 2,412 month rows make a message over 1 MB; aiohttp advises a stream for such a request body.
# One message per invocation cannot starve anything, so the advice is not an error here.
@pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning")
async def test_the_email_of_a_referenced_summary_is_sent(
    ingested: dict[str, dict[str, Any]],
    mail: tuple[EmailSettings, str],
    aio_session: Any,
    aws_endpoint: str,
) -> None:
    """The email function reads the summary from S3 and sends one email with every month."""
    settings, recipient = mail
    async with (
        aio_session.client("dynamodb", endpoint_url=aws_endpoint) as dynamodb,
        aio_session.client("s3", endpoint_url=aws_endpoint) as s3,
        aio_session.client("sesv2", endpoint_url=aws_endpoint) as ses,
    ):
        sent = await send_summary_email(
            ingested["Big"]["detail"],
            settings=settings,
            dynamodb=dynamodb,
            s3=s3,
            ses=ses,
            template_cache=TemplateCache(),
        )
    assert sent.account_id == "Big"
    (message,) = sent_messages(recipient)
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    content = text.get_content()
    assert "1900" in content
    assert "2100" in content


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["summaryRef"].update(key="incoming/many/months.csv"), "summaryRef must be"),
        (lambda d: d["summaryRef"].update(bucket="someone-elses"), "summaryRef must be"),
        (lambda d: d.update(accountId="Small"), "summaryRef must be"),
        (lambda d: d.update(importId="f" * 32), "summaryRef must be"),
        (lambda d: d.pop("summaryRef"), "summaryRef is missing"),
    ],
)
async def test_a_reference_to_any_other_object_is_refused_without_reading_it(
    ingested: dict[str, dict[str, Any]],
    mail: tuple[EmailSettings, str],
    aio_session: Any,
    aws_endpoint: str,
    change: Any,
    problem: str,
) -> None:
    """The event cannot make the function read an upload, a report or another bucket."""
    detail = copy.deepcopy(ingested["Big"]["detail"])
    change(detail)
    async with aio_session.client("s3", endpoint_url=aws_endpoint) as s3:
        with pytest.raises(InvalidSummaryEventError, match=problem):
            await send_summary_email(
                detail,
                settings=mail[0],
                dynamodb=object(),  # type: ignore[arg-type]
                s3=s3,
                ses=object(),  # type: ignore[arg-type]
                template_cache=TemplateCache(),
            )


async def test_a_missing_referenced_summary_is_a_permanent_failure(
    ingest_stack: IngestStack,
    ingested: dict[str, dict[str, Any]],
    mail: tuple[EmailSettings, str],
    aio_session: Any,
    aws_endpoint: str,
) -> None:
    """Deleted (or expired) before the email ran: a clear permanent error, not a retry loop."""
    detail = ingested["Big"]["detail"]
    ingest_stack.client("s3").delete_object(
        Bucket=ingest_stack.bucket, Key=detail["summaryRef"]["key"]
    )
    async with (
        aio_session.client("dynamodb", endpoint_url=aws_endpoint) as dynamodb,
        aio_session.client("s3", endpoint_url=aws_endpoint) as s3,
    ):
        with pytest.raises(InvalidSummaryEventError, match="does not exist"):
            await send_summary_email(
                detail,
                settings=mail[0],
                dynamodb=dynamodb,
                s3=s3,
                ses=object(),  # type: ignore[arg-type]
                template_cache=TemplateCache(),
            )


@pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning")
def test_the_email_handler_sends_one_email_for_a_repeated_version_2_event(
    ingested: dict[str, dict[str, Any]],
    mail: tuple[EmailSettings, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Idempotency keys a version 2 event on its importId and accountId, as version 1."""
    settings, recipient = mail
    monkeypatch.setenv("USERS_TABLE", settings.users_table)
    monkeypatch.setenv("TEMPLATES_BUCKET", settings.templates_bucket)
    monkeypatch.setenv("SENDER_EMAIL", settings.sender_email)
    monkeypatch.setenv("IDEMPOTENCY_TABLE", settings.idempotency_table)
    from handlers.send_user_email import handler  # noqa: PLC0415 - needs the env

    context = FakeLambdaContext(function_name="send-user-email")
    first = handler(copy.deepcopy(ingested["Big"]), context)  # type: ignore[arg-type]
    second = handler(copy.deepcopy(ingested["Big"]), context)  # type: ignore[arg-type]

    assert first["status"] == "sent"
    assert second == first
    assert len(sent_messages(recipient)) == 1
