"""``stori-pipeline demo`` end to end with the project's template and real handlers.

Expected numbers are computed independently with the offline summarizer (``summarize``), and
checked against the ``.eml`` the flow wrote, parsed with the standard library.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from email.message import EmailMessage
from pathlib import Path

import pytest

from stori_pipeline.cli import build_parser, main
from stori_pipeline.local.demo import LocalSession, local_plan, run_demo
from stori_pipeline.local.dispatcher import LambdaContext, ThreadRuntime
from stori_pipeline.local.stack import clients
from stori_pipeline.money import format_cents
from stori_pipeline.stream import file_chunks, summarize_stream
from stori_pipeline.summary import AccountSummary
from stori_pipeline.synthetic import HeaderStyle, SyntheticSpec, write_synthetic

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"

pytestmark = pytest.mark.skipif(
    not (TEMPLATE.is_file() and (REPO / "src/stori_pipeline/ingest").is_dir()),
    reason="needs template.yaml and the ingest/email handlers (merged from their branches)",
)


def _text(path: Path) -> str:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def _assert_email_shows(text: str, summary: AccountSummary) -> None:
    """The plain-text part shows the balance and the overall averages of ``summary``."""
    # Thousands separators and the currency sign ("-$1,234.50") are presentation.
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text).replace("$", "")
    assert format_cents(summary.balance_cents) in text
    for flow in (summary.credit, summary.debit):
        if flow.average_cents is not None:
            assert format_cents(flow.average_cents) in text


def _multi_account_file(path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        write_synthetic(
            SyntheticSpec(rows=300, accounts=3, seed=7, style=HeaderStyle.GO, error_rate=0.05),
            out,
        )
    return path


def test_demo_command_on_the_example(
    aws_endpoint: str, example_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI's demo --json on the bundled example emails the SPEC's worked numbers."""
    assert main(["summarize", str(example_csv), "--account", "AccountId123", "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    status = main(["demo", str(example_csv), "--json", "--out", str(tmp_path)])
    result = json.loads(capsys.readouterr().out)
    assert status == 0
    (account,) = result["accounts"]
    assert account["summaries"] == expected["accounts"]
    assert account["itemsWritten"] == expected["rowsAccepted"] == 4
    assert (account["eventsRouted"], account["rowsRejected"]) == (1, 0)
    (sent,) = account["emails"]
    text = _text(Path(sent["eml"]))
    for value in ("$39.74", "$35.25", "-$15.38"):  # pesos: the template's default, es-MX / MXN
        assert value in text
    assert Path(sent["html"]).read_text(encoding="utf-8").count("cid:") == 0


async def test_multi_account_file_with_rejected_rows(aws_endpoint: str, tmp_path: Path) -> None:
    """Each account of a file with invalid rows gets one email with its own numbers."""
    path = _multi_account_file(tmp_path / "multi.csv")
    expected = await summarize_stream(file_chunks(path))
    assert expected.rows_rejected > 0
    assert len(expected.accounts) == 3
    report = await run_demo(
        [path],
        out_dir=tmp_path / "out",
        template=TEMPLATE,
        endpoint=aws_endpoint,
        stack_name="e2e-multi",
    )
    assert report.ok
    by_account = {a.account_id: a for a in report.accounts}
    rejected = 0
    for summary in expected.accounts:
        account = by_account[summary.account_id]
        assert account.summaries == (summary,)
        assert account.items_written == summary.transaction_count
        (sent,) = account.emails
        _assert_email_shows(_text(sent.eml), summary)
        rejected = account.rows_rejected
    # The event carries the file's rejected count (SPEC §5), the same for every account.
    assert rejected == expected.rows_rejected
    assert report.reports, "a rejected-rows report is written and copied to out/"


async def test_duplicate_upload_event_sends_one_email(
    aws_endpoint: str, example_csv: Path, tmp_path: Path
) -> None:
    """The same Object Created event delivered twice through the stack sends one email."""
    plan = local_plan(TEMPLATE, "e2e-dup")
    async with LocalSession.open(plan, out_dir=tmp_path, endpoint=aws_endpoint) as session:
        uploads = await session.plan_uploads([example_csv], "AccountId123")
        await session.seed(["AccountId123"])
        await session.upload(uploads)
        queue = session.stack.queues[session.roles.ingest].queue_url
        async with clients(aws_endpoint, "sqs") as (sqs,):
            received = await sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)
            (message,) = received["Messages"]
            await sqs.send_message(QueueUrl=queue, MessageBody=message["Body"])
            await sqs.change_message_visibility(
                QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        dispatcher = await session.dispatch(session.runtimes(), deliveries=2)
        report = await session.collect(dispatcher)
    assert dispatcher.succeeded(session.roles.ingest) == 2
    (account,) = report.accounts
    assert len(account.emails) == 1
    assert account.items_written == 4


async def test_always_failing_handler_is_dead_lettered(
    aws_endpoint: str, example_csv: Path, tmp_path: Path
) -> None:
    """With the template's retry budget, a handler that always fails ends in the local DLQ."""
    attempts: list[str] = []

    def failing(event: dict[str, object], context: LambdaContext) -> None:
        attempts.append(context.aws_request_id)
        raise RuntimeError("injected failure")

    plan = local_plan(TEMPLATE, "e2e-dlq")
    ingest = next(f for f in plan.functions if "TRANSACTIONS_TABLE" in f.environment)
    report = await run_demo(
        [example_csv],
        out_dir=tmp_path,
        template=TEMPLATE,
        endpoint=aws_endpoint,
        stack_name="e2e-dlq",
        runtimes={ingest.logical_id: ThreadRuntime(failing)},
    )
    assert not report.ok
    assert len(report.dead_letters[ingest.logical_id]) == 1
    assert len(attempts) == ingest.max_receive_count
    assert all(not a.emails for a in report.accounts)


async def test_twenty_files_at_once_each_emailed_once(aws_endpoint: str, tmp_path: Path) -> None:
    """20 uploads at once: every file processed, one email per file, none twice."""
    files = []
    for n in range(20):
        path = tmp_path / f"batch-{n:02d}.csv"
        path.write_text(f"Id,Date,Transaction\n1,7/{n + 1},+{n + 1}.25\n2,8/2,-1.5\n", "utf-8")
        files.append(path)
    report = await run_demo(
        files,
        out_dir=tmp_path / "out",
        template=TEMPLATE,
        endpoint=aws_endpoint,
        stack_name="e2e-twenty",
    )
    assert report.ok
    (account,) = report.accounts
    assert len(account.emails) == 20
    assert account.events_routed == 20
    assert account.items_written == 40
    balances = sorted(s.balance_cents for s in account.summaries)
    assert balances == sorted((n + 1) * 100 + 25 - 150 for n in range(20))


async def test_demo_in_mexican_spanish(
    aws_endpoint: str, example_csv: Path, tmp_path: Path
) -> None:
    """With `--locale es-MX` the worked example is in pesos, Spanish months and its period."""
    report = await run_demo(
        [example_csv],
        out_dir=tmp_path / "out",
        template=TEMPLATE,
        endpoint=aws_endpoint,
        stack_name="e2e-es",
        locale="es-MX",
    )
    assert report.ok
    (sent,) = report.accounts[0].emails
    message = email.message_from_bytes(sent.eml.read_bytes(), policy=email.policy.default)
    assert str(message["Subject"]) == "Tu resumen de cuenta Stori: julio \N{EN DASH} agosto"
    text = _text(sent.eml)
    assert "Periodo: julio\u2009\N{EN DASH}\u2009agosto" in text
    assert "Saldo total: $39.74" in text
    assert re.search(r"Julio\s+2\s+\$60\.50\s+-\$10\.30\r?\n", text)
    assert re.search(r"Agosto\s+2\s+\$10\.00\s+-\$20\.46\r?\n", text)
    assert re.search(r"Todo el periodo\s+4\s+\$35\.25\s+-\$15\.38\r?\n", text)
    assert sent.html is not None
    page = sent.html.read_text(encoding="utf-8")
    assert '<html lang="es-MX"' in page
    assert "Importes en pesos mexicanos (MXN)." in page


def test_demo_and_local_up_take_a_locale_for_their_users() -> None:
    """`--locale es_mx` reaches the commands as the canonical es-MX."""
    parser = build_parser()
    assert parser.parse_args(["demo", "--locale", "es_mx"]).locale == "es-MX"
    assert parser.parse_args(["local", "up", "--locale", "EN-us"]).locale == "en-US"
    assert parser.parse_args(["demo"]).locale is None


def test_demo_rejects_an_unsupported_locale(capsys: pytest.CaptureFixture[str]) -> None:
    """`--locale fr-FR` is refused before anything starts, naming the languages supported."""
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--locale", "fr-FR"])
    assert exited.value.code == 2
    assert "(es, en)" in capsys.readouterr().err
