"""The workflow's state machine (statemachine/ingest.asl.json) executed by moto, end to end.

Its Lambda tasks reach the real step handler through the local bridge
(``stori_pipeline.local.stepfunctions``); the result must equal the single path's on the same
object (tables, report, events). Also: routing by size with one execution per object version,
a task that fails once and is retried, and a task that always fails (the execution fails, the
job and the error reach the workflow's DLQ, no summary event is published).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aioboto3
import pytest

from stori_pipeline.ingest import import_id
from stori_pipeline.local.stepfunctions import (
    create_state_machine,
    enable_execution,
    lambda_bridge,
    start_execution,
    wait_for_execution,
)
from stori_pipeline.scaleout import Job, execution_input, run_with_session
from stori_pipeline.settings import ScaleOutSettings
from tests.integration.ingest_stack import FakeLambdaContext, IngestStack
from tests.integration.test_scaleout_steps import _compare

REPO = Path(__file__).resolve().parents[2]
DEFINITION = (REPO / "statemachine" / "ingest.asl.json").read_text(encoding="utf-8")
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:process-large-transaction"

pytestmark = pytest.mark.usefixtures("aws_endpoint")

Invoke = Callable[[str, Any], Any]


class Workflow:
    """One test's state machine and DLQ, and how its tasks run."""

    def __init__(self, stack: IngestStack, settings: ScaleOutSettings) -> None:
        self.stack = stack
        self.settings = settings
        self.calls: list[dict[str, Any]] = []
        self.fail: Callable[[dict[str, Any]], bool] = lambda _payload: False
        self._lock = threading.Lock()
        sqs = stack.client("sqs")
        self.dlq_url = sqs.create_queue(QueueName=f"wf-dlq-{stack.suffix}")["QueueUrl"]
        self.arn = ""

    def invoke(self, function_name: str, payload: Any) -> Any:
        """The bridge's target: the real step code, in moto's interpreter thread."""
        assert function_name.endswith("process-large-transaction")
        with self._lock:
            self.calls.append(payload)
        if self.fail(payload):
            raise RuntimeError(f"injected failure in {payload['step']}")
        session = aioboto3.Session(region_name="us-east-1")
        return asyncio.run(run_with_session(payload, settings=self.settings, session=session))

    async def create(self) -> None:
        """Create the state machine from the repository's definition."""
        session = aioboto3.Session(region_name="us-east-1")
        await enable_execution(self.stack.endpoint)
        async with session.client("stepfunctions", endpoint_url=self.stack.endpoint) as sfn:
            self.arn = await create_state_machine(
                sfn,
                name=f"ingest-{self.stack.suffix}",
                definition=DEFINITION,
                substitutions={
                    "ProcessLargeTransactionFunctionArn": FUNCTION_ARN,
                    "DeadLetterQueueUrl": self.dlq_url,
                },
            )

    async def run(self, job: Job) -> Any:
        """Start an execution named after the job's importId and wait for its end."""
        session = aioboto3.Session(region_name="us-east-1")
        async with session.client("stepfunctions", endpoint_url=self.stack.endpoint) as sfn:
            started = await start_execution(
                sfn,
                state_machine_arn=self.arn,
                name=job.import_id,
                execution_input=json.loads(execution_input(job)),
            )
            return await wait_for_execution(sfn, started.execution_arn, limit_seconds=600)


@pytest.fixture
def workflow(moto_endpoint: str, unique: str) -> Iterator[Workflow]:
    """A stack, a state machine on it, and the bridge to the step code (retries not slept)."""
    stack = IngestStack(moto_endpoint, unique).create()
    settings = ScaleOutSettings.from_env({**stack.env(), "RANGE_BYTES": "1024", "PARTITIONS": "3"})
    flow = Workflow(stack, settings)
    asyncio.run(flow.create())
    with lambda_bridge(flow.invoke, retry_delay_scale=0.0):
        yield flow


def _job(stack: IngestStack, key: str, data: bytes) -> Job:
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
    etag = s3.head_object(Bucket=stack.bucket, Key=key)["ETag"].strip('"')
    return Job(stack.bucket, key, etag, import_id(stack.bucket, key, etag), len(data))


def _rows(count: int, *, accounts: int = 3) -> bytes:
    lines = [b"TransactionId,Date,Amount,AccountId\n"]
    for i in range(count):
        tx_id = b"%d" % (i % (count // 2 or 1))  # the second half repeats the first's ids
        lines.append(b'%s,7/%d/2024,"%d.5",A%d\n' % (tx_id, 1 + i % 28, i, i % accounts))
    return b"".join(lines)


def test_the_state_machine_gives_the_single_paths_result(workflow: Workflow) -> None:
    """Executed by moto, the workflow leaves what the single path leaves (duplicates included)."""
    stack = workflow.stack

    def run_by_state_machine(job: Job, settings: ScaleOutSettings, endpoint: str) -> Any:
        workflow.settings = settings
        outcome = asyncio.run(workflow.run(job))
        assert outcome.succeeded, (outcome.error, outcome.cause)
        return outcome.output

    result = _compare(stack, "incoming/sm.csv", _rows(400), 1024, runner=run_by_state_machine)
    assert result["ranges"] > 5
    steps = {call["step"] for call in workflow.calls}
    assert steps == {"plan", "scan", "link", "fingerprint", "cut", "resolve", "commit", "reduce"}


def test_a_task_that_fails_once_is_retried_to_the_same_result(workflow: Workflow) -> None:
    """A commit that fails on its first attempt is retried; the outcome is unchanged."""
    failed: set[int] = set()

    def once(payload: dict[str, Any]) -> bool:
        if payload["step"] == "commit" and payload["item"]["index"] == 1 and 1 not in failed:
            failed.add(1)
            return True
        return False

    workflow.fail = once

    def run_by_state_machine(job: Job, settings: ScaleOutSettings, endpoint: str) -> Any:
        workflow.settings = settings
        outcome = asyncio.run(workflow.run(job))
        assert outcome.succeeded, (outcome.error, outcome.cause)
        return outcome.output

    _compare(workflow.stack, "incoming/retry.csv", _rows(200), 1024, runner=run_by_state_machine)
    assert failed == {1}
    commits = [c for c in workflow.calls if c["step"] == "commit" and c["item"]["index"] == 1]
    assert len(commits) == 2


def test_a_task_that_always_fails_dead_letters_the_job_and_publishes_nothing(
    workflow: Workflow,
) -> None:
    """The execution fails, its job and error reach the DLQ, and no summary event is sent."""
    workflow.fail = lambda payload: payload["step"] == "fingerprint"
    job = _job(workflow.stack, "incoming/doomed.csv", _rows(100))
    outcome = asyncio.run(workflow.run(job))
    assert outcome.status == "FAILED"
    assert outcome.error == "IngestFailed"
    messages = workflow.stack.client("sqs").receive_message(
        QueueUrl=workflow.dlq_url, MaxNumberOfMessages=10
    )["Messages"]
    assert len(messages) == 1
    body = json.loads(messages[0]["Body"])
    assert body["job"]["importId"] == job.import_id
    assert "error" in body
    assert workflow.stack.summary_events(expected=0) == []
    assert not [c for c in workflow.calls if c["step"] == "reduce"]


def test_a_large_upload_is_routed_to_one_execution_per_version(
    workflow: Workflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingest handler starts the workflow for a large object, once however often it is told."""
    from handlers import process_user_transaction  # noqa: PLC0415

    stack = workflow.stack
    env = {**stack.env(), "STATE_MACHINE_ARN": workflow.arn, "LARGE_OBJECT_BYTES": "1000"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    event = stack.upload("incoming/routed.csv", _rows(200))
    first = process_user_transaction.handler(event, FakeLambdaContext())
    assert first["status"] == "started"
    assert first["path"] == "distributed"
    # A repeated delivery (idempotency off: a new idempotency table) starts nothing new.
    stack.idempotency_table = f"{stack.idempotency_table}-2"
    stack.create_idempotency_table()
    monkeypatch.setenv("IDEMPOTENCY_TABLE", stack.idempotency_table)
    second = process_user_transaction.handler(event, FakeLambdaContext())
    # Step Functions answers a repeated name with the same input, while the first execution
    # runs, with that execution (idempotent), and once it has ended with
    # ExecutionAlreadyExists: either way nothing new starts.
    if second["status"] == "started":
        assert second["executionArn"] == first["executionArn"]
    else:
        assert second["status"] == "duplicate"
    executions = stack.client("stepfunctions").list_executions(stateMachineArn=workflow.arn)
    assert len(executions["executions"]) == 1

    async def finished() -> Any:
        session = aioboto3.Session(region_name="us-east-1")
        async with session.client("stepfunctions", endpoint_url=stack.endpoint) as sfn:
            return await wait_for_execution(sfn, first["executionArn"], limit_seconds=600)

    assert asyncio.run(finished()).succeeded
    stack.summary_events()  # the large file's
    stack.client("s3").put_object(
        Bucket=stack.bucket, Key="incoming/A1/small.csv", Body=b"Id,Date,Transaction\n1,7/15,1\n"
    )
    small = [
        e for e in stack.s3_events() if e["detail"]["object"]["key"] == "incoming/A1/small.csv"
    ]
    assert process_user_transaction.handler(small[0], FakeLambdaContext())["path"] == "single"
