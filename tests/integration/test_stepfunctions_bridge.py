"""State machines executed by moto's interpreter, their Lambda tasks bridged to Python callables.

The workflow is the distributed ingest's shape: Plan (a Task that writes a JSON manifest to S3)
→ a Distributed Map reading that manifest with an ``ItemReader``, one Task per item → Reduce.
The functions are plain callables recording every call, so each test can say exactly which
invocations happened, and how the interpreter reacted to a failure.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import aioboto3
import boto3
import pytest

from stori_pipeline.errors import AwsOperationError
from stori_pipeline.local.stepfunctions import (
    ExecutionOutcome,
    ExecutionWaitTimeoutError,
    LambdaServiceError,
    MotoInternalsChangedError,
    create_state_machine,
    enable_execution,
    invoker_on_loop,
    lambda_bridge,
    start_execution,
    substitute_definition,
    wait_for_execution,
)
from stori_pipeline.local.template import LOCAL_ACCOUNT_ID, LOCAL_REGION

FUNCTION_ARN_PREFIX = f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function"
DEFINITION = """{
  "Comment": "Plan -> Distributed Map over an S3 JSON manifest -> Reduce",
  "StartAt": "Plan",
  "States": {
    "Plan": {
      "Type": "Task",
      "Resource": "arn:aws:states:::lambda:invoke",
      "Parameters": {
        "FunctionName": "${PlanFunctionArn}",
        "Payload": {"importId.$": "$.importId", "items.$": "$.items", "bucket": "${Bucket}"}
      },
      "ResultSelector": {
        "bucket.$": "$.Payload.bucket", "key.$": "$.Payload.key", "count.$": "$.Payload.count"
      },
      "ResultPath": "$.plan",
      "Retry": [{"ErrorEquals": ["Lambda.ServiceException", "Lambda.TooManyRequestsException"],
                 "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2}],
      "Next": "Work"
    },
    "Work": {
      "Type": "Map",
      "ItemReader": {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSON", "MaxItems": ${MaxItems}},
        "Parameters": {"Bucket.$": "$.plan.bucket", "Key.$": "$.plan.key"}
      },
      "ItemSelector": {
        "importId.$": "$.importId", "item.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"
      },
      "MaxConcurrency": ${MaxConcurrency},
      "ToleratedFailurePercentage": ${ToleratedFailurePercentage},
      "ItemProcessor": {
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
        "StartAt": "Range",
        "States": {
          "Range": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "${WorkFunction}", "Payload.$": "$"},
            "OutputPath": "$.Payload",
            "Retry": [{"ErrorEquals": ["States.TaskFailed"],
                       "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 2}],
            "End": true
          }
        }
      },
      "ResultPath": "$.parts",
      "Next": "Reduce"
    },
    "Reduce": {
      "Type": "Task",
      "Resource": "arn:aws:states:::lambda:invoke",
      "Parameters": {
        "FunctionName": "${ReduceFunction}",
        "Payload": {"importId.$": "$.importId", "parts.$": "$.parts"}
      },
      "ResultSelector": {"total.$": "$.Payload.total", "order.$": "$.Payload.order"},
      "ResultPath": "$.result",
      "OutputPath": "$.result",
      "Catch": [{"ErrorEquals": ["RejectedImportError"], "ResultPath": "$.failure",
                 "Next": "Report"}],
      "End": true
    },
    "Report": {
      "Type": "Task",
      "Resource": "arn:aws:states:::lambda:invoke",
      "Parameters": {
        "FunctionName": "${ReportFunction}",
        "Payload": {
          "message.$": "States.Format('import {} rejected: {}', $.importId, $.failure.Error)",
          "cause.$": "$.failure.Cause"
        }
      },
      "OutputPath": "$.Payload",
      "End": true
    }
  }
}"""


class WorkError(Exception):
    """A range that cannot be processed."""


class RejectedImportError(Exception):
    """The reduce step refuses the import (caught by the definition's Catch)."""


class Functions:
    """The workflow's Lambda functions as one thread-safe invoker that records every call.

    An item's ``fail`` field says how its work fails: ``"once"`` (the first attempt raises) or
    ``"always"``. An import id says how plan and reduce behave: ``svc-…`` (the Lambda service
    refuses the first plan call), ``empty-…`` (plan raises), ``reject-…`` (reduce raises).
    """

    def __init__(self, endpoint: str) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name=LOCAL_REGION)
        self.plan_gate: threading.Event | None = None
        self.rendezvous: threading.Condition | None = None
        self.entered = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, function_name: str, payload: Any) -> Any:
        """Record the call and run the function of that name (its attempt number counted)."""
        with self._lock:
            self.calls.append((function_name, payload))
            attempt = self.calls.count((function_name, payload))
        return getattr(self, function_name)(payload, attempt)

    def of(self, function_name: str) -> list[Any]:
        """The payloads ``function_name`` was invoked with, in order."""
        with self._lock:
            return [payload for name, payload in self.calls if name == function_name]

    def plan(self, payload: dict[str, Any], attempt: int) -> dict[str, Any]:
        """Write the items as the S3 manifest the Map reads; return where it is."""
        import_id = payload["importId"]
        if self.plan_gate is not None:
            self.plan_gate.wait(timeout=30)
        if import_id.startswith("svc-") and attempt == 1:
            raise LambdaServiceError("ServiceException", "Service unavailable", status=503)
        if import_id.startswith("empty-"):
            raise ValueError(f"{import_id}: nothing to plan")
        key = f"manifests/{import_id}.json"
        self.s3.put_object(Bucket=payload["bucket"], Key=key, Body=json.dumps(payload["items"]))
        return {"bucket": payload["bucket"], "key": key, "count": len(payload["items"])}

    def work(self, payload: dict[str, Any], attempt: int) -> dict[str, Any]:
        """One Map child: square the item's ``n``."""
        item = payload["item"]
        if self.rendezvous is not None:
            self._meet()
        if item.get("fail") == "always" or (item.get("fail") == "once" and attempt == 1):
            raise WorkError(f"range {payload['index']} failed (attempt {attempt})")
        return {"index": payload["index"], "square": item["n"] * item["n"]}

    def _meet(self) -> None:
        """Hold the first two calls together for a moment: a third joining them shows.

        The hold is bounded (0.5 s): it proves an absence, that no third child ran beside them.
        """
        assert self.rendezvous is not None
        with self.rendezvous:
            self.entered += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.rendezvous.notify_all()
            if self.entered <= 2:
                self.rendezvous.wait_for(lambda: self.in_flight > 2, timeout=0.5)
            self.in_flight -= 1

    def reduce(self, payload: dict[str, Any], attempt: int) -> dict[str, Any]:
        """Merge the children's results (a tolerated failure's is null)."""
        del attempt
        if payload["importId"].startswith("reject-"):
            raise RejectedImportError("too many rejected rows")
        parts = [part for part in payload["parts"] if part is not None]
        return {
            "total": sum(part["square"] for part in parts),
            "order": [part["index"] for part in parts],
        }

    def report(self, payload: dict[str, Any], attempt: int) -> dict[str, Any]:
        """The Catch route's target: echo the message and the parsed cause."""
        del attempt
        return {"reported": payload["message"], "cause": json.loads(payload["cause"])}

    def echo(self, payload: Any, attempt: int) -> Any:
        """Return the input, wrapped."""
        del attempt
        return {"echo": payload}


@pytest.fixture
async def sfn(
    aio_session: aioboto3.Session,
    aws_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Any]:
    """A Step Functions client on a moto server that executes state machines."""
    monkeypatch.setenv("MOTO_PORT", str(urlsplit(aws_endpoint).port))  # restored after the test
    await enable_execution(aws_endpoint)
    async with aio_session.client("stepfunctions", endpoint_url=aws_endpoint) as client:
        yield client


@pytest.fixture
def functions(aws_endpoint: str) -> Iterator[Functions]:
    """The recording functions, bridged to every Lambda task; retries wait no time."""
    recorder = Functions(aws_endpoint)
    with lambda_bridge(recorder, retry_delay_scale=0.0):
        yield recorder


@pytest.fixture
async def bucket(s3: Any, unique: str) -> str:
    """The bucket the plan writes its manifests to."""
    name = f"sfn-{unique}"
    await s3.create_bucket(Bucket=name)
    return name


async def ingest_machine(
    sfn: Any,
    unique: str,
    bucket: str,
    *,
    max_concurrency: int = 4,
    tolerated_failure_percentage: float = 0.0,
    max_items: int = 1000,
) -> str:
    """Create the Plan → Map → Reduce machine with SAM-style substitutions."""
    return await create_state_machine(
        sfn,
        name=f"ingest-{unique}-{max_concurrency}-{tolerated_failure_percentage}",
        definition=DEFINITION,
        substitutions={
            "PlanFunctionArn": f"{FUNCTION_ARN_PREFIX}:plan",
            "WorkFunction": "work",
            "ReduceFunction": "reduce:live",
            "ReportFunction": "report",
            "Bucket": bucket,
            "MaxConcurrency": max_concurrency,
            "ToleratedFailurePercentage": tolerated_failure_percentage,
            "MaxItems": max_items,
        },
    )


async def run(sfn: Any, machine: str, import_id: str, items: list[Any]) -> ExecutionOutcome:
    """Start one execution named after the import and wait for its end."""
    started = await start_execution(
        sfn,
        state_machine_arn=machine,
        name=import_id,
        execution_input={"importId": import_id, "items": items},
    )
    assert not started.already_existed
    return await wait_for_execution(sfn, started.execution_arn, limit_seconds=60)


async def history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    """Every event of an execution's history, oldest first."""
    events: list[dict[str, Any]] = []
    paginator = sfn.get_paginator("get_execution_history")
    async for page in paginator.paginate(executionArn=execution_arn):
        events.extend(page["events"])
    return events


def details(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    """The detail dicts of the events of one type."""
    return [
        next(value for key, value in event.items() if key.endswith("EventDetails"))
        for event in events
        if event["type"] == event_type
    ]


def numbers(count: int) -> list[dict[str, Any]]:
    """``count`` manifest items whose work squares ``n``."""
    return [{"n": n} for n in range(1, count + 1)]


async def test_each_item_is_invoked_once_and_results_flow_to_reduce(
    sfn: Any, functions: Functions, unique: str, bucket: str
) -> None:
    """Plan's manifest drives the Map: one work call per item, reduce sees them in order."""
    machine = await ingest_machine(sfn, unique, bucket)

    outcome = await run(sfn, machine, f"imp-{unique}", numbers(7))

    assert outcome.status == "SUCCEEDED", outcome
    assert outcome.output == {"total": 1 + 4 + 9 + 16 + 25 + 36 + 49, "order": list(range(7))}
    assert functions.of("plan") == [
        {"importId": f"imp-{unique}", "items": numbers(7), "bucket": bucket}
    ]
    work = functions.of("work")
    assert sorted(call["index"] for call in work) == list(range(7))
    assert all(call == {"importId": f"imp-{unique}", "item": {"n": call["index"] + 1},
                        "index": call["index"]} for call in work)  # fmt: skip
    [reduce] = functions.of("reduce")
    assert [part["index"] for part in reduce["parts"]] == list(range(7))


async def test_max_concurrency_bounds_the_children_running_at_once(
    sfn: Any, functions: Functions, unique: str, bucket: str
) -> None:
    """MaxConcurrency 2: two children do run side by side, never a third."""
    functions.rendezvous = threading.Condition()
    machine = await ingest_machine(sfn, unique, bucket, max_concurrency=2)

    outcome = await run(sfn, machine, f"imp-{unique}", numbers(6))

    assert outcome.succeeded, outcome
    assert functions.most_in_flight == 2


async def test_reader_config_max_items_limits_the_items_read(
    sfn: Any, functions: Functions, unique: str, bucket: str
) -> None:
    """ReaderConfig.MaxItems reads only the manifest's first items."""
    machine = await ingest_machine(sfn, unique, bucket, max_items=3)

    outcome = await run(sfn, machine, f"imp-{unique}", numbers(5))

    assert outcome.output == {"total": 1 + 4 + 9, "order": [0, 1, 2]}
    assert len(functions.of("work")) == 3


async def test_a_child_failing_once_is_retried_to_the_same_final_state(
    sfn: Any, functions: Functions, unique: str, bucket: str
) -> None:
    """Retry on States.TaskFailed: the flaky item runs twice, the result equals a clean run."""
    machine = await ingest_machine(sfn, unique, bucket)
    clean = await run(sfn, machine, f"clean-{unique}", numbers(4))
    flaky_items = numbers(4)
    flaky_items[2]["fail"] = "once"

    flaky = await run(sfn, machine, f"flaky-{unique}", flaky_items)

    assert flaky.succeeded, flaky
    assert flaky.output == clean.output
    attempts = Counter(
        call["index"] for call in functions.of("work") if call["importId"] == f"flaky-{unique}"
    )
    assert attempts == {0: 1, 1: 1, 2: 2, 3: 1}


async def test_a_lambda_service_error_is_retried_by_its_lambda_error_name(
    sfn: Any, functions: Functions, unique: str, bucket: str
) -> None:
    """A LambdaServiceError is Lambda.<code> to the interpreter: Plan's Retry catches it."""
    machine = await ingest_machine(sfn, unique, bucket)

    outcome = await run(sfn, machine, f"svc-{unique}", numbers(2))

    assert outcome.succeeded, outcome
    assert len(functions.of("plan")) == 2
    failed = details(await history(sfn, outcome.execution_arn), "TaskFailed")
    assert [event["error"] for event in failed] == ["Lambda.ServiceException"]


async def test_a_permanently_failing_child_fails_the_execution(
    sfn: Any, functions: Functions, unique: str, bucket: str
) -> None:
    """Retries exhausted in one child: the Map run fails as on AWS, reduce never runs."""
    machine = await ingest_machine(sfn, unique, bucket)
    items = numbers(3)
    items[1]["fail"] = "always"

    outcome = await run(sfn, machine, f"bad-{unique}", items)

    assert outcome.status == "FAILED"
    assert outcome.error == "States.ExceedToleratedFailureThreshold"
    assert outcome.cause is not None
    assert "1 of 3 items failed" in outcome.cause
    events = await history(sfn, outcome.execution_arn)
    [map_run_failed] = details(events, "MapRunFailed")
    assert map_run_failed["error"] == "States.ExceedToleratedFailureThreshold"
    assert [event["type"] for event in events][-1] == "ExecutionFailed"
    assert functions.of("reduce") == []
    attempts = Counter(call["index"] for call in functions.of("work"))
    assert attempts == {0: 1, 1: 3, 2: 1}  # the first attempt and MaxAttempts 2 retries


async def test_tolerated_failure_percentage_lets_the_map_succeed(
    sfn: Any, functions: Functions, unique: str, bucket: str
) -> None:
    """ToleratedFailurePercentage 50: one failure in three is tolerated, reduce runs."""
    machine = await ingest_machine(sfn, unique, bucket, tolerated_failure_percentage=50.0)
    items = numbers(3)
    items[1]["fail"] = "always"

    outcome = await run(sfn, machine, f"bad-{unique}", items)

    assert outcome.succeeded, outcome
    assert outcome.output == {"total": 1 + 9, "order": [0, 2]}


async def test_a_caught_map_failure_reaches_a_dead_letter_queue(
    sfn: Any, functions: Functions, aio_session: aioboto3.Session, aws_endpoint: str, unique: str
) -> None:
    """Catch on the Map → sqs:sendMessage → Fail: the input and the error land in the DLQ."""
    async with aio_session.client("sqs", endpoint_url=aws_endpoint) as sqs:
        dlq = (await sqs.create_queue(QueueName=f"dlq-{unique}"))["QueueUrl"]
        machine = await create_state_machine(
            sfn,
            name=f"dlq-{unique}",
            definition=json.dumps(
                {
                    "StartAt": "Work",
                    "States": {
                        "Work": {
                            "Type": "Map",
                            "ItemsPath": "$.items",
                            "ItemSelector": {
                                "item.$": "$$.Map.Item.Value",
                                "index.$": "$$.Map.Item.Index",
                            },
                            "ItemProcessor": {
                                "ProcessorConfig": {
                                    "Mode": "DISTRIBUTED",
                                    "ExecutionType": "STANDARD",
                                },
                                "StartAt": "Range",
                                "States": {
                                    "Range": {
                                        "Type": "Task",
                                        "Resource": "arn:aws:states:::lambda:invoke",
                                        "Parameters": {"FunctionName": "work", "Payload.$": "$"},
                                        "End": True,
                                    }
                                },
                            },
                            "Catch": [
                                {
                                    "ErrorEquals": ["States.ALL"],
                                    "ResultPath": "$.error",
                                    "Next": "DeadLetter",
                                }
                            ],
                            "End": True,
                        },
                        "DeadLetter": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::sqs:sendMessage",
                            "Parameters": {"QueueUrl": dlq, "MessageBody.$": "$"},
                            "ResultPath": None,
                            "Next": "Failed",
                        },
                        "Failed": {
                            "Type": "Fail",
                            "Error": "IngestFailed",
                            "CausePath": "$.error.Cause",
                        },
                    },
                }
            ),
        )
        items = [{"n": 1}, {"n": 2, "fail": "always"}]

        outcome = await run(sfn, machine, f"dlq-{unique}", items)

        messages = (await sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10))["Messages"]
    assert (outcome.status, outcome.error) == ("FAILED", "IngestFailed")
    [message] = [json.loads(message["Body"]) for message in messages]
    assert message["items"] == items
    assert message["error"]["Error"] == "States.ExceedToleratedFailureThreshold"


async def test_a_failing_task_shows_its_error_in_describe_and_history(
    sfn: Any, functions: Functions, unique: str, bucket: str
) -> None:
    """An exception in a function is Lambda's Unhandled error: errorType names the error."""
    machine = await ingest_machine(sfn, unique, bucket)

    outcome = await run(sfn, machine, f"empty-{unique}", [])

    assert outcome.status == "FAILED"
    assert outcome.error == "ValueError"
    assert outcome.cause is not None
    assert json.loads(outcome.cause)["errorMessage"] == f"empty-{unique}: nothing to plan"
    failed = details(await history(sfn, outcome.execution_arn), "TaskFailed")
    assert [(event["error"], event["resourceType"]) for event in failed] == [
        ("ValueError", "lambda")
    ]
    assert functions.of("work") == []


async def test_catch_routes_a_custom_error_to_its_handler_state(
    sfn: Any, functions: Functions, unique: str, bucket: str
) -> None:
    """Catch on the error's type name: Report gets States.Format's message and the cause."""
    machine = await ingest_machine(sfn, unique, bucket)

    outcome = await run(sfn, machine, f"reject-{unique}", numbers(2))

    assert outcome.succeeded, outcome
    assert outcome.output["reported"] == f"import reject-{unique} rejected: RejectedImportError"
    assert outcome.output["cause"]["errorType"] == "RejectedImportError"
    assert outcome.output["cause"]["errorMessage"] == "too many rejected rows"
    assert len(functions.of("report")) == 1


async def test_a_second_start_with_a_finished_executions_name_starts_nothing(
    sfn: Any, functions: Functions, unique: str, bucket: str
) -> None:
    """The duplicate delivery guard: the name is taken, ExecutionAlreadyExists, one run."""
    machine = await ingest_machine(sfn, unique, bucket)
    first = await run(sfn, machine, f"imp-{unique}", numbers(2))

    again = await start_execution(
        sfn,
        state_machine_arn=machine,
        name=f"imp-{unique}",
        execution_input={"importId": f"imp-{unique}", "items": numbers(2)},
    )

    assert again.already_existed
    assert again.execution_arn == first.execution_arn
    executions = (await sfn.list_executions(stateMachineArn=machine))["executions"]
    assert [execution["name"] for execution in executions] == [f"imp-{unique}"]
    assert len(functions.of("plan")) == 1


async def test_a_second_start_while_the_first_runs_starts_nothing(
    sfn: Any, functions: Functions, unique: str, bucket: str
) -> None:
    """Same name while running: same input is idempotent (same ARN), another is refused."""
    functions.plan_gate = threading.Event()
    machine = await ingest_machine(sfn, unique, bucket)
    execution_input = {"importId": f"imp-{unique}", "items": numbers(2)}
    first = await start_execution(
        sfn, state_machine_arn=machine, name=f"imp-{unique}", execution_input=execution_input
    )
    try:
        same = await start_execution(
            sfn, state_machine_arn=machine, name=f"imp-{unique}", execution_input=execution_input
        )
        other = await start_execution(
            sfn,
            state_machine_arn=machine,
            name=f"imp-{unique}",
            execution_input={**execution_input, "items": numbers(3)},
        )
    finally:
        functions.plan_gate.set()
    outcome = await wait_for_execution(sfn, first.execution_arn, limit_seconds=60)

    assert (same.execution_arn, same.already_existed) == (first.execution_arn, False)
    assert (other.execution_arn, other.already_existed) == (first.execution_arn, True)
    assert outcome.succeeded
    assert len(functions.of("plan")) == 1


async def test_waiting_gives_up_after_its_limit_on_a_running_execution(
    sfn: Any, functions: Functions, unique: str, bucket: str
) -> None:
    """wait_for_execution raises once its limit passes; the execution itself runs on."""
    functions.plan_gate = threading.Event()
    machine = await ingest_machine(sfn, unique, bucket)
    started = await start_execution(
        sfn,
        state_machine_arn=machine,
        name=f"slow-{unique}",
        execution_input={"importId": f"slow-{unique}", "items": numbers(1)},
    )
    try:
        with pytest.raises(ExecutionWaitTimeoutError) as raised:
            await wait_for_execution(sfn, started.execution_arn, limit_seconds=0.2)
    finally:
        functions.plan_gate.set()

    assert raised.value.execution_arn == started.execution_arn
    assert (await wait_for_execution(sfn, started.execution_arn, limit_seconds=60)).succeeded


async def test_the_legacy_lambda_resource_form_is_bridged_too(
    sfn: Any, functions: Functions, unique: str
) -> None:
    """A Task whose Resource is the function's ARN gets the function's result as output."""
    machine = await create_state_machine(
        sfn,
        name=f"echo-{unique}",
        definition=json.dumps(
            {
                "StartAt": "Echo",
                "States": {
                    "Echo": {
                        "Type": "Task",
                        "Resource": f"{FUNCTION_ARN_PREFIX}:echo",
                        "End": True,
                    }
                },
            }
        ),
    )

    outcome = await run(sfn, machine, f"echo-{unique}", [1, "two"])

    assert outcome.output == {"echo": {"importId": f"echo-{unique}", "items": [1, "two"]}}
    assert [name for name, _ in functions.calls] == ["echo"]


async def test_an_async_invoker_runs_on_the_waiting_loop(sfn: Any, unique: str) -> None:
    """invoker_on_loop: a coroutine function on the test's loop serves moto's threads."""
    loop = asyncio.get_running_loop()
    served_on: list[asyncio.AbstractEventLoop] = []

    async def invoke(function_name: str, payload: Any) -> Any:
        served_on.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return {"function": function_name, "doubled": payload["n"] * 2}

    machine = await create_state_machine(
        sfn,
        name=f"async-{unique}",
        definition=json.dumps(
            {
                "StartAt": "Double",
                "States": {
                    "Double": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::lambda:invoke",
                        "Parameters": {"FunctionName": "double", "Payload": {"n.$": "$.n"}},
                        "OutputPath": "$.Payload",
                        "End": True,
                    }
                },
            }
        ),
    )
    with lambda_bridge(invoker_on_loop(loop, invoke, timeout=30)):
        started = await start_execution(
            sfn, state_machine_arn=machine, name=f"async-{unique}", execution_input={"n": 21}
        )
        outcome = await wait_for_execution(sfn, started.execution_arn, limit_seconds=60)

    assert outcome.output == {"function": "double", "doubled": 42}
    assert served_on == [loop]


async def test_an_unsupported_asl_field_is_refused_at_creation(sfn: Any, unique: str) -> None:
    """The parser rejects ItemBatcher when the machine is created, not mid-execution."""
    definition = json.loads(
        substitute_definition(
            DEFINITION,
            {
                "PlanFunctionArn": "plan",
                "WorkFunction": "work",
                "ReduceFunction": "reduce",
                "ReportFunction": "report",
                "Bucket": "b",
                "MaxConcurrency": 1,
                "ToleratedFailurePercentage": 0.0,
                "MaxItems": 10,
            },
        )
    )
    definition["States"]["Work"]["ItemBatcher"] = {"MaxItemsPerBatch": 10}

    with pytest.raises(AwsOperationError) as raised:
        await create_state_machine(sfn, name=f"batcher-{unique}", definition=json.dumps(definition))

    assert raised.value.operation == "CreateStateMachine"
    assert "ItemBatcher" in str(raised.value)


def test_one_bridge_at_a_time(aws_endpoint: str) -> None:
    """The interpreter is process-wide: a second bridge while one is active is refused."""
    recorder = Functions(aws_endpoint)
    with (
        lambda_bridge(recorder),
        pytest.raises(RuntimeError, match="already active"),
        lambda_bridge(recorder),
    ):
        pass
    with lambda_bridge(recorder):  # and the first one's exit released it
        pass


def test_changed_moto_internals_are_reported_not_patched(
    aws_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If moto's interpreter no longer has the seam, the bridge says so and patches nothing."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl  # noqa: PLC0415
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import (  # noqa: PLC0415
        lambda_eval_utils,
    )

    monkeypatch.delattr(lambda_eval_utils, "boto_client_for")

    with (
        pytest.raises(MotoInternalsChangedError, match="boto_client_for"),
        lambda_bridge(Functions(aws_endpoint)),
    ):
        pass
    assert retrier_decl.time.sleep.__module__ == "time"
