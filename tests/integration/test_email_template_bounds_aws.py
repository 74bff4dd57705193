"""Issue 11 §1 against a moto server: a hostile S3 template never stalls or corrupts sending.

The production budget is used throughout (send_summary_email and the handler take no budget):
only cases that fail fast are here; the slow ones are unit tests with a small budget.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import boto3
import pytest

from stori_pipeline.email import TemplateCache, TemplateProblem
from stori_pipeline.email.sandbox import DEFAULT_BUDGET
from tests.integration.test_email_aws import (  # noqa: F401 - fixtures are found by name
    REGION,
    FakeLambdaContext,
    Stack,
    handler_env,
    send_for,
    sent_messages,
    ses,
    stack,
    summary_event,
)

# The deployment's default locale (es-MX) and currency (MXN).
MONTH_ROWS = (r"Julio\s+2\s+\$60\.50\s+-\$10\.30", r"Agosto\s+2\s+\$10\.00\s+-\$20\.46")
SLACK_SECONDS = 3.0


def assert_packaged_and_whole(message: Any) -> None:
    """The packaged HTML, and a text part with every month row."""
    html = message.get_body(preferencelist=("html",))
    text = message.get_body(preferencelist=("plain",))
    assert html is not None
    assert text is not None
    assert "Mes por mes" in html.get_content()
    for row in MONTH_ROWS:
        assert re.search(row, text.get_content()), row


@pytest.mark.usefixtures("handler_env")
def test_handler_falls_back_from_a_process_killing_template_and_counts_it(
    aws_endpoint: str,
    stack: Stack,  # noqa: F811 - the fixture imported above
    unique: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """'x'.ljust(10**9) (the inliner abort) -> packaged email, EmailTemplateFallback metric."""
    from handlers.send_user_email import handler  # noqa: PLC0415 - needs the env

    bucket, key = stack.settings.templates_bucket, stack.settings.template_key
    boto3.client("s3", region_name=REGION, endpoint_url=aws_endpoint).put_object(
        Bucket=bucket, Key=key, Body=b"{{ 'x'.ljust(10**9) }}"
    )
    capsys.readouterr()
    result = handler(summary_event(f"acc-{unique}", "a" * 32), FakeLambdaContext())
    assert (result["status"], result["templateSource"]) == ("sent", "packaged")
    (message,) = sent_messages(stack.recipient)
    assert_packaged_and_whole(message)
    emf = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and '"_aws"' in line
    ]
    fallbacks = [e for e in emf if "EmailTemplateFallback" in e]
    assert [(e["EmailTemplateFallback"], e["templateProblem"]) for e in fallbacks] == [
        ([1.0], "out_of_memory")
    ]


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        (b"{% for i in range(1000) %}{{ 'x' * 100000 }}{% endfor %}", "output_too_large"),
        (b"{% set _ = months.append(1) %}{{ balance }}", "security_error"),
        (b"{% set _ = months.clear() %}{{ balance }}", "security_error"),
    ],
)
async def test_hostile_template_neither_bloats_nor_corrupts_the_message(
    dynamodb: Any,
    s3: Any,
    ses: Any,  # noqa: F811 - the fixture imported above
    stack: Stack,  # noqa: F811
    unique: str,
    template: bytes,
    reason: str,
) -> None:
    """A 100 MB output is never sent; mutating months cannot reach the text part."""
    bucket, key = stack.settings.templates_bucket, stack.settings.template_key
    await s3.put_object(Bucket=bucket, Key=key, Body=template)
    problems: list[TemplateProblem] = []
    sent = await send_for(stack, (dynamodb, s3, ses), f"acc-{unique}", "b" * 32, problems)
    assert sent.template_source == "packaged"
    assert [p.reason for p in problems] == [reason]
    (message,) = sent_messages(stack.recipient)
    assert_packaged_and_whole(message)
    assert len(message.as_bytes()) < DEFAULT_BUDGET.output_bytes


async def test_deleting_a_cached_hostile_template_restores_delivery(
    dynamodb: Any,
    s3: Any,
    ses: Any,  # noqa: F811
    stack: Stack,  # noqa: F811
    unique: str,
) -> None:
    """Bounded while it exists; once deleted, the cached copy is dropped and never rendered."""
    bucket, key = stack.settings.templates_bucket, stack.settings.template_key
    await s3.put_object(Bucket=bucket, Key=key, Body=b"{{ 'x'|indent(999999999, true) }}")
    cache = TemplateCache()
    problems: list[TemplateProblem] = []

    async def send(import_id: str) -> str:
        clients = (dynamodb, s3, ses)
        sent = await send_for(stack, clients, f"acc-{unique}", import_id, problems, cache=cache)
        return sent.template_source

    started = time.monotonic()
    assert await send("c" * 32) == "packaged"
    assert time.monotonic() - started < DEFAULT_BUDGET.seconds + SLACK_SECONDS
    assert cache.get(bucket, key) is not None  # the object is readable: it stays cached

    await s3.delete_object(Bucket=bucket, Key=key)
    assert await send("d" * 32) == "packaged"
    assert cache.get(bucket, key) is None
    assert [p.reason for p in problems] == ["out_of_memory", "missing"]
    assert len(sent_messages(stack.recipient)) == 2

    await s3.put_object(Bucket=bucket, Key=key, Body=b"<p>fixed {{ balance }}</p>")
    assert await send("e" * 32) == f"s3://{bucket}/{key}"
