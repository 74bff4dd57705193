"""``stori-pipeline demo`` end to end with the project's template and real handlers.

Expected numbers are computed independently with the offline summarizer (``summarize``), and
checked against the ``.eml`` the flow wrote, parsed with the standard library.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import subprocess
import sys
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
    (delivery,) = account["deliveries"]
    assert (delivery["outcome"], delivery["email"]) == ("sent", sent)
    # The per-upload record, from the ingest invocation's own result.
    (upload,) = result["uploads"]
    assert upload["key"] == "incoming/AccountId123/challenge_example.csv"
    assert (upload["path"], upload["ranges"], upload["report"]) == ("single", None, None)
    assert (upload["rowsRead"], upload["rowsAccepted"], upload["rowsRejected"]) == (4, 4, 0)
    assert (upload["fileError"], upload["fileErrorReason"]) == (None, None)
    assert (upload["outcome"], result["ok"], result["problems"]) == ("processed", True, [])


def test_demo_of_a_file_that_is_no_csv_says_so_and_fails(tmp_path: Path) -> None:
    """`demo README.md`: the file is rejected as bad_header, shown as such, exit status 1."""
    readme = tmp_path / "README.md"
    readme.write_text("# A title\n\nSome prose, not a CSV.\n", "utf-8")
    # Its own process: the CLI starts its own emulator, with the default stack's names.
    done = subprocess.run(
        [sys.executable, "-m", "stori_pipeline.cli", "demo", str(readme), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    result = json.loads(done.stdout)
    assert done.returncode == 1
    assert result["ok"] is False
    (upload,) = result["uploads"]
    assert (upload["outcome"], upload["fileError"]) == ("file rejected", "bad_header")
    assert "missing required column" in upload["fileErrorReason"]
    assert upload["rowsAccepted"] == 0
    assert any("bad_header" in problem for problem in result["problems"])
    assert all(not a["emails"] for a in result["accounts"])
    assert "README.md: file rejected (bad_header: missing required column" in done.stderr
    # Nothing of the emulator's own logging reaches the console.
    assert "ToleratedFailurePercentage" not in done.stderr


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
    for summary in expected.accounts:
        account = by_account[summary.account_id]
        assert account.summaries == (summary,)
        assert account.items_written == summary.transaction_count
        (sent,) = account.emails
        _assert_email_shows(_text(sent.eml), summary)
    (upload,) = report.uploads
    # An AccountId column: the file is not filed under one account's folder.
    assert upload.key == "incoming/multi.csv"
    assert (upload.rows_rejected, upload.rows_accepted) == (
        expected.rows_rejected,
        expected.rows_accepted,
    )
    assert upload.report is not None
    assert upload.report.read_text(encoding="utf-8").count("\n") == expected.rows_rejected + 1


async def test_each_account_shows_its_own_rejected_rows(aws_endpoint: str, tmp_path: Path) -> None:
    """Per account, the rows rejected that carry its AccountId, not the file's total."""
    path = tmp_path / "three.csv"
    path.write_text(
        "Id,Date,Amount,AccountId\n"
        "1,7/1,+10.00,Ana\n"
        "2,7/2,ten,Ana\n"  # invalid amount: Ana's
        "3,7/3,-1.00,Ana\n"
        "3,7/4,-2.00,Ana\n"  # duplicate id: Ana's
        "4,7/5,+5.00,Bob\n"
        "5,13/1,+5.00,Bob\n"  # invalid date: Bob's
        "6,7/6,+7.00,Cy\n"
        "7,7/7,+1.00,not an id!\n",  # invalid account: nobody's
        "utf-8",
    )
    report = await run_demo(
        [path],
        out_dir=tmp_path / "out",
        template=TEMPLATE,
        endpoint=aws_endpoint,
        stack_name="e2e-rejected",
    )
    assert report.ok
    rejected = {a.account_id: a.rows_rejected for a in report.accounts}
    assert rejected == {"Ana": 2, "Bob": 1, "Cy": 0}
    assert {a.account_id: a.items_written for a in report.accounts} == {"Ana": 2, "Bob": 1, "Cy": 1}
    (upload,) = report.uploads
    assert (upload.rows_read, upload.rows_rejected) == (8, 4)


async def test_unknown_user_is_shown_as_such_and_fails_the_demo(
    aws_endpoint: str, tmp_path: Path
) -> None:
    """An account with no user gets no email, an "unknown user" outcome, and no one's path."""
    path = tmp_path / "two.csv"
    path.write_text("Id,Date,Amount,AccountId\n1,7/1,+10.00,Ana\n2,7/2,+3.00,Ghost\n", "utf-8")
    plan = local_plan(TEMPLATE, "e2e-unknown")
    async with LocalSession.open(plan, out_dir=tmp_path, endpoint=aws_endpoint) as session:
        uploads = await session.plan_uploads([path], "AccountId123")
        await session.seed(["Ana"])  # no user for Ghost
        await session.upload(uploads)
        dispatcher = await session.dispatch(session.runtimes())
        report = await session.collect(dispatcher)
    by_account = {a.account_id: a for a in report.accounts}
    (ghost,) = by_account["Ghost"].deliveries
    assert (ghost.outcome, ghost.reason, ghost.email) == ("unknown user", "unknown_account", None)
    assert by_account["Ghost"].emails == ()
    (ana,) = by_account["Ana"].emails
    assert ana.to == ("ana@example.com",)
    assert not report.ok
    assert report.problems == ("Ghost: email unknown user (unknown_account)",)


async def test_parameter_overrides_reach_the_functions(
    aws_endpoint: str, example_csv: Path, tmp_path: Path
) -> None:
    """LogLevel=WARNING, as sam deploy takes it, silences the running functions' INFO logs."""
    report = await run_demo(
        [example_csv],
        out_dir=tmp_path,
        template=TEMPLATE,
        endpoint=aws_endpoint,
        stack_name="e2e-params",
        parameter_overrides=["LogLevel=WARNING"],
    )
    assert report.ok
    logs = [json.loads(line) for line in _log_lines(tmp_path / "logs")]
    assert logs, "the functions ran and wrote their (metrics) lines"
    assert "INFO" not in {entry.get("level") for entry in logs}
    # With the default level the same run logs "object ingested" at INFO.
    default = await run_demo(
        [example_csv],
        out_dir=tmp_path / "default",
        template=TEMPLATE,
        endpoint=aws_endpoint,
        stack_name="e2e-params-default",
    )
    assert default.ok
    levels = {json.loads(line).get("level") for line in _log_lines(tmp_path / "default" / "logs")}
    assert "INFO" in levels


def _log_lines(log_dir: Path) -> list[str]:
    return [
        line
        for log in sorted(log_dir.glob("*.log"))
        for line in log.read_text(encoding="utf-8").splitlines()
        if line.startswith("{")
    ]


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
    (upload,) = report.uploads
    assert (upload.outcome, upload.duplicates) == ("processed", 1)
    assert report.ok


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

    # Twenty emails to one account: twenty files, each the email of its own summary.
    assert len({sent.eml for sent in account.emails}) == 20
    for summary, delivery in zip(account.summaries, account.deliveries, strict=True):
        assert delivery.email is not None
        _assert_email_shows(_text(delivery.email.eml), summary)


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


async def test_a_file_forced_through_the_workflow_gives_the_single_paths_results(
    aws_endpoint: str, tmp_path: Path
) -> None:
    """`--parameter-overrides LargeObjectBytes=1 RangeBytes=4096`: the state machine on moto.

    The upload takes the distributed path in many ranges, and its numbers, summaries and
    rejected-rows report are those of the same file read by the single function.
    """
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        write_synthetic(SyntheticSpec(rows=1500, accounts=3, seed=3, error_rate=0.03), out)
    runs = {}
    for name, overrides in (
        ("single", ()),
        ("distributed", ("LargeObjectBytes=1", "RangeBytes=4096")),
    ):
        report = await run_demo(
            [path],
            out_dir=tmp_path / name,
            template=TEMPLATE,
            endpoint=aws_endpoint,
            stack_name=f"e2e-{name[:4]}",
            parameter_overrides=overrides,
        )
        assert report.ok, report.problems
        runs[name] = report.to_json()
    single, split = (runs[n]["uploads"][0] for n in ("single", "distributed"))
    assert single["path"] == "single"
    assert single["ranges"] is None
    assert split["path"] == "distributed"
    assert split["ranges"] >= 8
    for field in ("rowsRead", "rowsAccepted", "rowsRejected", "itemsWritten", "fileError"):
        assert split[field] == single[field], field
    assert Path(split["report"]).read_bytes() == Path(single["report"]).read_bytes()  # noqa: ASYNC240 - a small local file
    for mine, theirs in zip(
        runs["distributed"]["accounts"], runs["single"]["accounts"], strict=True
    ):
        assert mine["summaries"] == theirs["summaries"]
        assert mine["rowsRejected"] == theirs["rowsRejected"]
