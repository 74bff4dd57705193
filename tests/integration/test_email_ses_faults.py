"""SES errors: throttling and quotas are retried then fail the invocation; rejections never retry.

Faults are injected with botocore's event hooks on the aiobotocore SESv2 client, in front of
the real moto server (as tests/integration/test_ingest_faults.py does for DynamoDB): an
injected error is answered without sending, so moto records exactly what got through. The
"unverified address" case needs no injection: moto's SES refuses an unverified sender with
``MessageRejected``, as SES does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from stori_pipeline.email import EmailRejectedError, TemplateCache, send_summary_email
from stori_pipeline.email.ses import SEND_POLICY
from stori_pipeline.errors import RetriesExhaustedError
from stori_pipeline.settings import EmailSettings
from tests.integration.conftest import EmailResources
from tests.integration.ingest_stack import FakeLambdaContext
from tests.integration.test_email_aws import sent_messages, summary_event

pytestmark = pytest.mark.usefixtures("no_backoff_sleeps")  # retry backoffs never sleep


@dataclass
class SesFaults:
    """Answer the first ``times`` SendEmail calls with ``code`` (HTTP ``status``)."""

    code: str
    times: int
    status: int = 400
    calls: int = 0
    injected: int = 0

    def before_call(self, **_: Any) -> Any:
        """Fail this call without sending it, while faults remain."""
        self.calls += 1
        if self.injected >= self.times:
            return None
        self.injected += 1
        error = {"Error": {"Code": self.code, "Message": "injected"}, "ResponseMetadata": {}}
        return _Status(self.status), error


@dataclass
class _Status:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def mail(email_resources: EmailResources, unique: str) -> tuple[EmailSettings, str]:
    """A user, the templates bucket, a verified sender; the recipient."""
    recipient = f"ana-{unique}@example.com"
    return email_resources({f"acc-{unique}": {"Email": recipient}}), recipient


async def send(
    settings: EmailSettings, unique: str, aio_session: Any, endpoint: str, faults: SesFaults | None
) -> Any:
    """send_summary_email for this test's account, with ``faults`` on the SESv2 client."""
    async with (
        aio_session.client("dynamodb", endpoint_url=endpoint) as dynamodb,
        aio_session.client("s3", endpoint_url=endpoint) as s3,
        aio_session.client("sesv2", endpoint_url=endpoint) as ses,
    ):
        if faults is not None:
            ses.meta.events.register("before-call.sesv2.SendEmail", faults.before_call)
        return await send_summary_email(
            summary_event(f"acc-{unique}", "a" * 32)["detail"],
            settings=settings,
            dynamodb=dynamodb,
            s3=s3,
            ses=ses,
            template_cache=TemplateCache(),
        )


@pytest.mark.parametrize(
    ("code", "status"),
    [("TooManyRequestsException", 429), ("LimitExceededException", 400)],
)
async def test_throttling_and_quota_errors_are_retried_until_sent(
    mail: tuple[EmailSettings, str],
    unique: str,
    aio_session: Any,
    aws_endpoint: str,
    code: str,
    status: int,
) -> None:
    """Two refusals, then SES accepts: one email, sent on the third try."""
    faults = SesFaults(code, times=2, status=status)
    sent = await send(mail[0], unique, aio_session, aws_endpoint, faults)

    assert sent.recipient == mail[1]
    assert faults.injected == 2
    assert len(sent_messages(mail[1])) == 1


async def test_a_quota_that_lasts_fails_the_invocation_for_lambda_to_retry(
    mail: tuple[EmailSettings, str], unique: str, aio_session: Any, aws_endpoint: str
) -> None:
    """Over quota on every attempt: RetriesExhaustedError (transient), nothing sent."""
    faults = SesFaults("LimitExceededException", times=1_000)
    with pytest.raises(RetriesExhaustedError) as caught:
        await send(mail[0], unique, aio_session, aws_endpoint, faults)

    assert caught.value.code == "LimitExceededException"
    assert faults.calls == SEND_POLICY.max_attempts
    assert sent_messages(mail[1]) == []


async def test_a_rejected_address_is_permanent_and_tried_once(
    mail: tuple[EmailSettings, str], unique: str, aio_session: Any, aws_endpoint: str
) -> None:
    """MessageRejected (SES sandbox: unverified recipient) is not retried."""
    faults = SesFaults("MessageRejected", times=1_000)
    with pytest.raises(EmailRejectedError) as caught:
        await send(mail[0], unique, aio_session, aws_endpoint, faults)

    assert faults.calls == 1
    assert caught.value.ses_code == "MessageRejected"
    assert caught.value.code == "ses_rejected"


@pytest.fixture
def handler_env(mail: tuple[EmailSettings, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The email function's environment."""
    settings = mail[0]
    monkeypatch.setenv("USERS_TABLE", settings.users_table)
    monkeypatch.setenv("TEMPLATES_BUCKET", settings.templates_bucket)
    monkeypatch.setenv("SENDER_EMAIL", settings.sender_email)
    monkeypatch.setenv("IDEMPOTENCY_TABLE", settings.idempotency_table)


@pytest.mark.usefixtures("handler_env")
def test_the_handler_logs_an_unverified_sender_once_and_returns(
    unique: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Moto's own MessageRejected (an unverified sender): a clear log line, no raise, no retry."""
    monkeypatch.setenv("SENDER_EMAIL", f"unverified-{unique}@stori.example")
    from handlers.send_user_email import handler  # noqa: PLC0415 - needs the env

    context = FakeLambdaContext(function_name="send-user-email")
    result = handler(summary_event(f"acc-{unique}", "b" * 32), context)  # type: ignore[arg-type]

    assert (result["status"], result["reason"]) == ("failed", "ses_rejected")
    (line,) = [r for r in caplog.records if "not retried" in r.getMessage()]
    assert "MessageRejected" in str(getattr(line, "error", ""))


@pytest.mark.usefixtures("handler_env")
def test_the_handler_raises_on_a_lasting_throttle_so_lambda_retries_then_dead_letters(
    unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler does not swallow a transient SES failure."""
    from handlers import send_user_email  # noqa: PLC0415 - needs the env

    faults = SesFaults("TooManyRequestsException", times=1_000, status=429)
    import stori_pipeline.email as email_package  # noqa: PLC0415 - the handler imports it late

    real_send = email_package.send_summary_email

    async def throttled(detail: Any, **kwargs: Any) -> Any:
        import aioboto3  # noqa: PLC0415

        async with aioboto3.Session().client("sesv2") as ses:
            ses.meta.events.register("before-call.sesv2.SendEmail", faults.before_call)
            return await real_send(detail, ses=ses, **kwargs)

    monkeypatch.setattr(email_package, "send_summary_email", throttled)
    context = FakeLambdaContext(function_name="send-user-email")
    with pytest.raises(RetriesExhaustedError):
        send_user_email.handler(summary_event(f"acc-{unique}", "c" * 32), context)  # type: ignore[arg-type]
    assert faults.calls == SEND_POLICY.max_attempts
