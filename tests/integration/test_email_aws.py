"""send-user-email against a moto server: Users lookup, S3 template + ETag cache, SES, handler."""

from __future__ import annotations

import copy
import dataclasses
import email
import email.policy
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aioboto3
import pytest
from moto.backends import get_backend

from stori_pipeline.email import (
    InvalidEmailError,
    SentEmail,
    TemplateCache,
    TemplateProblem,
    UnknownAccountError,
    lookup_user,
    send_summary_email,
)
from stori_pipeline.settings import EmailSettings
from tests.integration.conftest import EmailResources

REGION = "us-east-1"
MOTO_ACCOUNT = "123456789012"
EVENT_FILE = Path(__file__).resolve().parent.parent / "events" / "transactions_summarized.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sent_messages(recipient: str) -> list[EmailMessage]:
    """Raw messages moto's SES received for ``recipient``, parsed (moto runs in-process)."""
    backend = get_backend("ses")[MOTO_ACCOUNT][REGION]
    parsed = []
    for message in list(backend.sent_messages):
        if any(recipient in d for d in getattr(message, "destinations", [])):
            one = email.message_from_string(message.raw_data, policy=email.policy.default)
            assert isinstance(one, EmailMessage)
            parsed.append(one)
    return parsed


def summary_event(account_id: str, import_id: str) -> dict[str, Any]:
    """The sample EventBridge event, re-keyed to this test's account and import."""
    event: dict[str, Any] = json.loads(EVENT_FILE.read_text(encoding="utf-8"))
    event = copy.deepcopy(event)
    event["detail"]["importId"] = import_id
    event["detail"]["summary"]["accountId"] = account_id
    return event


@dataclass(frozen=True)
class Stack:
    """This test's resources on the moto server."""

    settings: EmailSettings
    recipient: str


async def send_for(
    stack: Stack,
    clients: tuple[Any, Any, Any],
    account_id: str,
    import_id: str,
    problems: list[TemplateProblem],
    *,
    cache: TemplateCache | None = None,
) -> SentEmail:
    """``send_summary_email`` of :func:`summary_event`, as the function calls it.

    ``clients`` are the DynamoDB, S3 and SESv2 clients; template problems go to ``problems``;
    a fresh template cache unless ``cache`` is given.
    """
    dynamodb, s3, ses = clients
    return await send_summary_email(
        summary_event(account_id, import_id)["detail"],
        settings=stack.settings,
        dynamodb=dynamodb,
        s3=s3,
        ses=ses,
        template_cache=TemplateCache() if cache is None else cache,
        on_template_problem=problems.append,
    )


@pytest.fixture
async def ses(aio_session: aioboto3.Session, aws_endpoint: str) -> AsyncIterator[Any]:
    """A SESv2 client on the moto server."""
    async with aio_session.client("sesv2", endpoint_url=aws_endpoint) as client:
        yield client


@pytest.fixture
def stack(email_resources: EmailResources, unique: str) -> Stack:
    """Users table (with users), templates bucket, verified sender, idempotency table."""
    recipient = f"ana-{unique}@example.com"
    users = {
        f"acc-{unique}": {"Email": recipient, "Name": "Ana García"},
        f"en-{unique}": {"Email": f"ann-{unique}@example.com", "Name": "Ann", "Locale": "en-US"},
        f"odd-{unique}": {"Email": f"oz-{unique}@example.com", "Name": "Oz", "Locale": "tlh-QQ"},
        f"bad-{unique}": {"Email": "not an address", "Name": "Bo"},
        f"noemail-{unique}": {"Name": "Cy"},
    }
    return Stack(email_resources(users, sender_name="Stori"), recipient)


class GetObjectBodies:
    """Counts GetObject responses that carried a body (200), via botocore's event hooks."""

    def __init__(self, s3: Any) -> None:
        self.count = 0
        s3.meta.events.register("after-call.s3.GetObject", self._after_call)

    def _after_call(self, http_response: Any, **_: Any) -> None:
        if http_response.status_code == 200:
            self.count += 1


async def test_lookup_user_found_unknown_and_invalid(dynamodb: Any, stack: Stack) -> None:
    """A known account gives its user; unknown and bad-address accounts are permanent errors."""
    table = stack.settings.users_table
    suffix = table.removeprefix("users-")
    user = await lookup_user(dynamodb, table=table, account_id=f"acc-{suffix}")
    assert (user.email, user.name, user.locale) == (stack.recipient, "Ana García", None)
    english = await lookup_user(dynamodb, table=table, account_id=f"en-{suffix}")
    assert (english.name, english.locale) == ("Ann", "en-US")
    with pytest.raises(UnknownAccountError):
        await lookup_user(dynamodb, table=table, account_id=f"nobody-{suffix}")
    with pytest.raises(InvalidEmailError):
        await lookup_user(dynamodb, table=table, account_id=f"bad-{suffix}")
    with pytest.raises(InvalidEmailError):
        await lookup_user(dynamodb, table=table, account_id=f"noemail-{suffix}")


async def test_sends_mime_with_both_parts_and_logo(
    dynamodb: Any, s3: Any, ses: Any, stack: Stack, unique: str
) -> None:
    """With no S3 template, SES gets one parseable message: text, HTML and the inline logo.

    The user has no Locale, so it is written in the deployment's default, es-MX, in pesos.
    """
    problems: list[TemplateProblem] = []
    sent = await send_for(stack, (dynamodb, s3, ses), f"acc-{unique}", "1" * 32, problems)
    assert sent.template_source == "packaged"
    assert [p.reason for p in problems] == ["missing"]
    (message,) = sent_messages(stack.recipient)
    assert message["To"].addresses[0].addr_spec == stack.recipient
    assert message["To"].addresses[0].display_name == "Ana García"
    assert message["From"].addresses[0].display_name == "Stori"
    # The period's thin spaces become plain ones: header white space is normalized.
    assert str(message["Subject"]) == "Tu resumen de cuenta Stori: julio \N{EN DASH} agosto"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert 'lang="es-MX"' in html.get_content()
    for figure in ("$39.74", "-$15.38", "$35.25", "Julio", "Agosto", "Todo el periodo"):
        assert figure in text.get_content()
        assert figure in html.get_content()
    (logo,) = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert logo.get_content().startswith(PNG_MAGIC)
    assert f"cid:{str(logo['Content-ID']).strip('<>')}" in html.get_content()


async def test_users_locale_and_the_deployments_currency_and_contact_reach_the_email(
    dynamodb: Any, s3: Any, ses: Any, stack: Stack, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Users.Locale en-US gives English; CURRENCY and SUPPORT_EMAIL come from the settings.

    An unusable Locale falls back to DEFAULT_LOCALE (here en-US) with a warning, and the
    email is still sent.
    """
    settings = dataclasses.replace(
        stack.settings,
        default_locale="en-US",
        currency="USD",
        support_email="help@stori.example",
    )
    for account, import_id in ((f"en-{unique}", "4" * 32), (f"odd-{unique}", "5" * 32)):
        await send_summary_email(
            summary_event(account, import_id)["detail"],
            settings=settings,
            dynamodb=dynamodb,
            s3=s3,
            ses=ses,
            template_cache=TemplateCache(),
        )
    for address in (f"ann-{unique}@example.com", f"oz-{unique}@example.com"):
        (message,) = sent_messages(address)
        assert str(message["Subject"]) == "Your Stori account summary: July \N{EN DASH} August"
        text = message.get_body(preferencelist=("plain",))
        assert text is not None
        for words in ("$39.74", "-$15.38", "July", "Whole period", "help@stori.example", "(USD)"):
            assert words in text.get_content()
    assert "'tlh-QQ'" in caplog.text


async def test_s3_template_overrides_and_is_revalidated_by_etag(
    dynamodb: Any, s3: Any, ses: Any, stack: Stack, unique: str
) -> None:
    """The operator's S3 template is used; a second send revalidates it without downloading."""
    bucket, key = stack.settings.templates_bucket, stack.settings.template_key
    await s3.put_object(Bucket=bucket, Key=key, Body=b"<p>v1 {{ name }} {{ balance }}</p>")
    bodies = GetObjectBodies(s3)
    cache = TemplateCache()
    detail = summary_event(f"acc-{unique}", "2" * 32)["detail"]

    async def send() -> str:
        sent = await send_summary_email(
            detail, settings=stack.settings, dynamodb=dynamodb, s3=s3, ses=ses, template_cache=cache
        )
        return sent.template_source

    assert await send() == f"s3://{bucket}/{key}"
    assert bodies.count == 1
    assert await send() == f"s3://{bucket}/{key}"
    assert bodies.count == 1  # 304 Not Modified: the body was not downloaded again

    await s3.put_object(Bucket=bucket, Key=key, Body=b"<p>v2 {{ balance }}</p>")
    await send()
    assert bodies.count == 2

    htmls = [m.get_body(preferencelist=("html",)) for m in sent_messages(stack.recipient)]
    contents = [h.get_content() for h in htmls if h is not None]
    assert len(contents) == 3
    nowrap = '<span style="white-space:nowrap">'
    assert f"v1 Ana García {nowrap}$39.74</span>" in contents[0]
    assert f"v1 Ana García {nowrap}$39.74</span>" in contents[1]
    assert f"v2 {nowrap}$39.74</span>" in contents[2]


async def test_broken_s3_template_falls_back_to_packaged(
    dynamodb: Any, s3: Any, ses: Any, stack: Stack, unique: str
) -> None:
    """A template that reaches for Python internals is reported and the packaged one is sent."""
    bucket, key = stack.settings.templates_bucket, stack.settings.template_key
    await s3.put_object(
        Bucket=bucket, Key=key, Body=b"{{ ''.__class__.__mro__[1].__subclasses__() }}"
    )
    problems: list[TemplateProblem] = []
    sent = await send_for(stack, (dynamodb, s3, ses), f"acc-{unique}", "3" * 32, problems)
    assert sent.template_source == "packaged"
    assert [(p.source, p.reason) for p in problems] == [(f"s3://{bucket}/{key}", "security_error")]
    (message,) = sent_messages(stack.recipient)
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    assert "Mes por mes" in html.get_content()


async def test_unknown_account_sends_nothing(
    dynamodb: Any, s3: Any, ses: Any, stack: Stack, unique: str
) -> None:
    """An account with no user raises UnknownAccountError and SES receives no message."""
    with pytest.raises(UnknownAccountError):
        await send_summary_email(
            summary_event(f"nobody-{unique}", "4" * 32)["detail"],
            settings=stack.settings,
            dynamodb=dynamodb,
            s3=s3,
            ses=ses,
            template_cache=TemplateCache(),
        )
    assert sent_messages(f"nobody-{unique}") == []


@dataclass(frozen=True)
class FakeLambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name: str = "send-user-email"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:send-user-email"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        """Plenty of time left."""
        return 60_000


@pytest.fixture
def handler_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The function's environment, as the SAM template sets it."""
    settings = stack.settings
    monkeypatch.setenv("USERS_TABLE", settings.users_table)
    monkeypatch.setenv("TEMPLATES_BUCKET", settings.templates_bucket)
    monkeypatch.setenv("SENDER_EMAIL", settings.sender_email)
    monkeypatch.setenv("IDEMPOTENCY_TABLE", settings.idempotency_table)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "StoriPipelineTest")


@pytest.mark.usefixtures("handler_env")
def test_handler_sends_one_email_for_a_duplicated_event(stack: Stack, unique: str) -> None:
    """The same event delivered twice sends exactly one email (Powertools idempotency)."""
    from handlers.send_user_email import handler  # noqa: PLC0415 - needs the env

    event = summary_event(f"acc-{unique}", "5" * 32)
    first = handler(event, FakeLambdaContext())
    second = handler(copy.deepcopy(event), FakeLambdaContext())
    assert first["status"] == "sent"
    assert second == first
    assert len(sent_messages(stack.recipient)) == 1

    other_import = summary_event(f"acc-{unique}", "6" * 32)
    assert handler(other_import, FakeLambdaContext())["status"] == "sent"
    assert len(sent_messages(stack.recipient)) == 2


@pytest.mark.usefixtures("handler_env")
def test_handler_metrics_use_the_configured_namespace(
    stack: Stack, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Metrics go to POWERTOOLS_METRICS_NAMESPACE (the template's), like the ingest's."""
    from handlers.send_user_email import handler  # noqa: PLC0415 - needs the env

    capsys.readouterr()
    assert handler(summary_event(f"acc-{unique}", "9" * 32), FakeLambdaContext())["status"] == (
        "sent"
    )
    emf = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and '"_aws"' in line
    ]
    namespaces = {m["Namespace"] for e in emf for m in e["_aws"]["CloudWatchMetrics"]}
    assert namespaces == {"StoriPipelineTest"}


@pytest.mark.usefixtures("handler_env")
def test_handler_returns_permanent_failures_without_raising(stack: Stack, unique: str) -> None:
    """Unknown account, bad address and a malformed event return a failure result, no raise."""
    from handlers.send_user_email import handler  # noqa: PLC0415 - needs the env

    unknown = handler(summary_event(f"nobody-{unique}", "7" * 32), FakeLambdaContext())
    bad = handler(summary_event(f"bad-{unique}", "8" * 32), FakeLambdaContext())
    malformed = handler({"detail": {"schemaVersion": 1}}, FakeLambdaContext())
    assert (unknown["status"], unknown["reason"]) == ("failed", "unknown_account")
    assert (bad["status"], bad["reason"]) == ("failed", "invalid_email")
    assert (malformed["status"], malformed["reason"]) == ("failed", "invalid_event")
    assert sent_messages(stack.recipient) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"\xff\xfe not utf-8 {{ balance }}", "not_utf8"), (b"x" * (256 * 1024 + 1), "too_large")],
)
async def test_unreadable_s3_template_falls_back(
    dynamodb: Any, s3: Any, ses: Any, stack: Stack, unique: str, body: bytes, reason: str
) -> None:
    """A template that is not UTF-8 or is oversized is reported; the packaged one is sent."""
    bucket, key = stack.settings.templates_bucket, stack.settings.template_key
    await s3.put_object(Bucket=bucket, Key=key, Body=body)
    problems: list[TemplateProblem] = []
    sent = await send_for(stack, (dynamodb, s3, ses), f"acc-{unique}", "9" * 32, problems)
    assert sent.template_source == "packaged"
    assert [p.reason for p in problems] == [reason]
    assert len(sent_messages(stack.recipient)) == 1
