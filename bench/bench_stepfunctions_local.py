"""The fixed costs of moto's Step Functions interpreter with the Lambda bridge (not a test).

Everything runs in this process, as in the local stack: moto's ``ThreadedMotoServer``, its
interpreter, and a bridged Lambda that returns at once, so the numbers are the interpreter's
own overhead, not our functions' work. It measures:

- an execution's floor: start → DescribeExecution sees it end, for a one-Pass machine;
- per Lambda task: a chain of ``--tasks`` ``lambda:invoke`` Tasks (Parameters, ResultSelector,
  ResultPath on each), minus the floor, divided by the number of tasks;
- per Distributed Map item: a Map over an S3 JSON manifest of ``--items`` items (ItemReader,
  ItemSelector with ``$$.Map.Item.Value``), one Lambda Task per child, at several
  ``MaxConcurrency`` values; and the same Map whose child is a Pass (no Lambda), which
  separates the cost of a child execution from that of its task.

Run: ``.venv/bin/python bench/bench_stepfunctions_local.py [--tasks 50] [--items 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

import aioboto3
from moto.server import ThreadedMotoServer

from stori_pipeline.local.stack import LOCAL_CREDENTIALS
from stori_pipeline.local.stepfunctions import (
    create_state_machine,
    enable_execution,
    lambda_bridge,
    start_execution,
    wait_for_execution,
)

BUCKET = "bench-sfn"
REPEATS = 3
Client = Any


def chain(tasks: int) -> str:
    """A machine of ``tasks`` Lambda Tasks in a row (0: a single Pass)."""
    if tasks == 0:
        return json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    states = {
        f"T{i}": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "noop", "Payload": {"step": i, "carry.$": "$.carry"}},
            "ResultSelector": {"value.$": "$.Payload.step"},
            "ResultPath": "$.last",
            **({"Next": f"T{i + 1}"} if i + 1 < tasks else {"End": True}),
        }
        for i in range(tasks)
    }
    return json.dumps({"StartAt": "T0", "States": states})


def distributed_map(max_concurrency: int, *, lambda_child: bool) -> str:
    """A Distributed Map over the manifest; each child one Lambda Task or one Pass."""
    child: dict[str, Any] = (
        {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "noop", "Payload.$": "$"},
            "OutputPath": "$.Payload",
            "End": True,
        }
        if lambda_child
        else {"Type": "Pass", "End": True}
    )
    return json.dumps(
        {
            "StartAt": "Map",
            "States": {
                "Map": {
                    "Type": "Map",
                    "ItemReader": {
                        "Resource": "arn:aws:states:::s3:getObject",
                        "ReaderConfig": {"InputType": "JSON"},
                        "Parameters": {"Bucket": BUCKET, "Key": "manifest.json"},
                    },
                    "ItemSelector": {"item.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"},
                    "MaxConcurrency": max_concurrency,
                    "ItemProcessor": {
                        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                        "StartAt": "Child",
                        "States": {"Child": child},
                    },
                    "ResultSelector": {"n.$": "States.ArrayLength($)"},
                    "End": True,
                }
            },
        }
    )


async def timed_runs(sfn: Client, definition: str, label: str) -> float:
    """Median seconds from StartExecution to its observed end, over REPEATS executions."""
    machine = await create_state_machine(sfn, name=label, definition=definition)
    seconds: list[float] = []
    for repeat in range(REPEATS):
        started = time.perf_counter()
        execution = await start_execution(
            sfn, state_machine_arn=machine, name=f"run-{repeat}", execution_input={"carry": "x"}
        )
        outcome = await wait_for_execution(sfn, execution.execution_arn, limit_seconds=600)
        seconds.append(time.perf_counter() - started)
        if not outcome.succeeded:
            raise RuntimeError(f"{label}: {outcome}")
    return statistics.median(seconds)


async def measure(endpoint: str, tasks: int, items: int) -> None:
    """Print the floor, the per-task and the per-item costs."""
    await enable_execution(endpoint)
    aws = aioboto3.Session()  # the fake credentials and region main() set
    async with (
        aws.client("stepfunctions", endpoint_url=endpoint) as sfn,
        aws.client("s3", endpoint_url=endpoint) as s3,
    ):
        await s3.create_bucket(Bucket=BUCKET)
        manifest = [{"range": i, "key": f"ranges/{i:05d}"} for i in range(items)]
        await s3.put_object(Bucket=BUCKET, Key="manifest.json", Body=json.dumps(manifest))

        floor = await timed_runs(sfn, chain(0), "floor")
        print(f"execution floor (one Pass): {floor * 1000:8.1f} ms")
        chained = await timed_runs(sfn, chain(tasks), "chain")
        per_task = (chained - floor) / tasks
        print(f"{tasks} chained Lambda tasks: {chained * 1000:8.1f} ms")
        print(f"  per Lambda task:           {per_task * 1000:8.2f} ms")
        for concurrency in (1, 8, 40, 0):
            for lambda_child in (True, False):
                label = f"map-{concurrency}-{'task' if lambda_child else 'pass'}"
                definition = distributed_map(concurrency, lambda_child=lambda_child)
                total = await timed_runs(sfn, definition, label)
                child = "Lambda task" if lambda_child else "Pass      "
                print(
                    f"Distributed Map, {items} items, MaxConcurrency {concurrency or 'unset':>5},"
                    f" child {child}: {total * 1000:8.1f} ms,"
                    f" {(total - floor) / items * 1000:6.2f} ms/item"
                )


def main() -> None:
    """Parse the arguments, start moto in this process, bridge Lambda, measure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--items", type=int, default=200)
    arguments = parser.parse_args()
    # moto accepts any credentials; fixed fake ones keep a real profile from being used.
    os.environ.update(LOCAL_CREDENTIALS)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        with lambda_bridge(lambda _name, payload: payload):
            asyncio.run(measure(f"http://{host}:{port}", arguments.tasks, arguments.items))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
