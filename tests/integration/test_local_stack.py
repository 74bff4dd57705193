"""The local stack on a moto server: routing from the template, dispatch, retries, DLQ.

These run against the stub handlers of ``tests/local/fixtures`` (a template shaped like the
project's), so the stack and the dispatcher are tested independently of the real functions.
"""

from __future__ import annotations

import copy
import email
import email.policy
from pathlib import Path
from typing import Any

from stori_pipeline.local.demo import LocalSession, run_demo
from stori_pipeline.local.dispatcher import LambdaContext, ThreadRuntime
from stori_pipeline.local.stack import clients, provision
from stori_pipeline.local.template import load_template, plan_stack
from stori_pipeline.stream import file_chunks, summarize_stream
from stori_pipeline.synthetic import HeaderStyle, SyntheticSpec, write_synthetic

FIXTURES = Path(__file__).resolve().parent.parent / "local" / "fixtures"
TEMPLATE = FIXTURES / "template.yaml"


def _plan(unique: str, template: dict[str, Any] | None = None) -> Any:
    return plan_stack(
        template or load_template(TEMPLATE),
        template_dir=FIXTURES,
        stack_name=f"t{unique}",
        parameter_overrides={"SenderEmail": "sender@example.com"},
    )


async def _queued(sqs: Any, url: str) -> list[dict[str, Any]]:
    response = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return response.get("Messages", [])


async def test_uploads_route_by_the_templates_pattern(aws_endpoint: str, unique: str) -> None:
    """An object under incoming/ reaches the ingest queue; one under reports/ does not."""
    stack = await provision(aws_endpoint, _plan(unique))
    bucket = stack.plan.bucket("TransactionsBucket").name
    queue = stack.queues["ProcessUserTransactionFunction"].queue_url
    async with clients(aws_endpoint, "s3", "sqs") as (s3, sqs):
        await s3.put_object(Bucket=bucket, Key="reports/a.csv", Body=b"x")
        await s3.put_object(Bucket=bucket, Key="incoming/A1/a.csv", Body=b"x")
        messages = await _queued(sqs, queue)
    assert len(messages) == 1
    assert '"incoming/A1/a.csv"' in messages[0]["Body"]


async def test_a_changed_pattern_changes_routing(aws_endpoint: str, unique: str) -> None:
    """With the template's prefix changed to uploads/, only uploads/ objects are routed."""
    template = copy.deepcopy(load_template(TEMPLATE))
    pattern = template["Resources"]["UserTransactionToProcessRule"]["Properties"]["EventPattern"]
    pattern["detail"]["object"]["key"] = [{"prefix": "uploads/"}]
    stack = await provision(aws_endpoint, _plan(unique, template))
    bucket = stack.plan.bucket("TransactionsBucket").name
    queue = stack.queues["ProcessUserTransactionFunction"].queue_url
    async with clients(aws_endpoint, "s3", "sqs") as (s3, sqs):
        await s3.put_object(Bucket=bucket, Key="incoming/A1/a.csv", Body=b"x")
        await s3.put_object(Bucket=bucket, Key="uploads/A1/b.csv", Body=b"x")
        messages = await _queued(sqs, queue)
    assert [m["Body"].count("uploads/A1/b.csv") for m in messages] == [1]


async def test_demo_runs_the_flow_in_worker_processes(
    aws_endpoint: str, unique: str, example_csv: Path, tmp_path: Path
) -> None:
    """Upload → rule → stub ingest → event → rule → stub email → SES → .eml on disk."""
    report = await run_demo(
        [example_csv],
        out_dir=tmp_path,
        template=TEMPLATE,
        endpoint=aws_endpoint,
        stack_name=f"t{unique}",
    )
    assert report.ok
    (account,) = report.accounts
    assert account.account_id == "AccountId123"
    assert (account.items_written, account.events_routed) == (4, 1)
    (sent,) = account.emails
    message = email.message_from_bytes(sent.eml.read_bytes(), policy=email.policy.default)
    assert message["To"] == "accountid123@example.com"
    assert "4 transactions" in message.get_body(preferencelist=("plain",)).get_content()
    assert sent.html is not None
    assert "4 transactions" in sent.html.read_text()
    # The stub publishes the service name it saw: each worker had its own function's env.
    log = (tmp_path / "logs" / f"t{unique}-processusertransactionfunction.log").read_text()
    assert "stub ingest done" in log


async def test_failing_handler_ends_in_the_dlq_and_is_reported(
    aws_endpoint: str, unique: str, example_csv: Path, tmp_path: Path
) -> None:
    """A handler that always fails is retried maxReceiveCount times, then dead-lettered."""
    calls: list[str] = []

    def failing(event: dict[str, Any], context: LambdaContext) -> None:
        calls.append(context.aws_request_id)
        raise RuntimeError("boom")

    report = await run_demo(
        [example_csv],
        out_dir=tmp_path,
        template=TEMPLATE,
        endpoint=aws_endpoint,
        stack_name=f"t{unique}",
        runtimes={"ProcessUserTransactionFunction": ThreadRuntime(failing)},
    )
    assert not report.ok
    (dead,) = report.dead_letters["ProcessUserTransactionFunction"]
    assert dead["detail"]["object"]["key"] == "incoming/AccountId123/challenge_example.csv"
    # MaximumRetryAttempts: 1 in the template → 2 deliveries in all.
    assert len(calls) == 2
    assert report.invocations["ProcessUserTransactionFunction"]["failed"] == 2
    assert [a.emails for a in report.accounts] == [()]
    assert report.to_json()["deadLetters"]["ProcessUserTransactionFunction"] == [dead]


async def test_twenty_files_at_once_are_each_processed_once(
    aws_endpoint: str, unique: str, tmp_path: Path
) -> None:
    """20 files uploaded together: 20 ingests, one email per file's account, nothing lost."""
    files = []
    for n in range(20):
        path = tmp_path / f"in-{n:02d}.csv"
        with path.open("w", encoding="utf-8", newline="") as out:
            write_synthetic(
                SyntheticSpec(rows=5 + n, accounts=1, seed=n, style=HeaderStyle.GO), out
            )
        files.append(path)
    expected = {}
    for path in files:
        result = await summarize_stream(file_chunks(path))
        for account in result.accounts:
            expected[account.account_id] = expected.get(account.account_id, 0) + 1
    async with LocalSession.open(
        _plan(unique), out_dir=tmp_path / "out", endpoint=aws_endpoint
    ) as session:
        uploads = await session.plan_uploads(files, "AccountId123")
        await session.seed({a for u in uploads for a in u.accounts})
        await session.upload(uploads)
        dispatcher = await session.dispatch(session.runtimes())
        report = await session.collect(dispatcher)
    assert report.ok
    assert dispatcher.succeeded("ProcessUserTransactionFunction") == 20
    sent = {a.account_id: len(a.emails) for a in report.accounts if a.emails}
    assert sent == expected
