"""The distributed path's steps against moto, run in the workflow's order, vs the single path.

The same object is ingested once by ``ingest_object`` (into one table) and once by the
workflow's steps (into another): both tables, the rejected-rows report, the results and the
published event details must be identical. The state machine itself is exercised through the
local stack (tests/integration/test_scaleout_stack.py); here each step is called directly.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from typing import Any

import aioboto3
import boto3
import pytest

from stori_pipeline.ingest import import_id, ingest_object
from stori_pipeline.scaleout import Clients, Job, run_step
from stori_pipeline.settings import IngestSettings, ScaleOutSettings
from stori_pipeline.synthetic import SyntheticSpec, write_synthetic
from tests.integration.ingest_stack import IngestStack

pytestmark = pytest.mark.usefixtures("aws_endpoint")


async def run_workflow(job: Job, settings: ScaleOutSettings, endpoint: str) -> dict[str, Any]:
    """Every step in the state machine's order, each map's items one after another."""
    session = aioboto3.Session(region_name="us-east-1")
    async with (
        session.client("s3", endpoint_url=endpoint) as s3,
        session.client("dynamodb", endpoint_url=endpoint) as dynamodb,
        session.client("events", endpoint_url=endpoint) as events,
    ):
        clients = Clients(s3, dynamodb, events)

        async def step(name: str, **extra: Any) -> dict[str, Any]:
            payload = {"step": name, "job": job.to_json(), **extra}
            return await run_step(payload, settings=settings, clients=clients)

        async def items(manifest: str) -> list[dict[str, Any]]:
            response = await s3.get_object(Bucket=job.bucket, Key=plan["manifests"][manifest])
            async with response["Body"] as body:
                return list(json.loads(await body.read()))

        plan = await step("plan")
        if plan["ranges"]:
            for name, manifest in (("scan", "ranges"),):
                for item in await items(manifest):
                    await step(name, plan=plan, item=item)
            await step("link", plan=plan)
            for item in await items("slices"):
                await step("fingerprint", plan=plan, item=item)
            await step("cut", plan=plan)
            for item in await items("partitions"):
                await step("resolve", plan=plan, item=item)
            for item in await items("commit"):
                await step("commit", plan=plan, item=item)
        return await step("reduce", plan=plan)


def _second_table(stack: IngestStack) -> str:
    name = f"{stack.table}-distributed"
    stack.create_transactions_table(name)
    return name


def _scan(stack: IngestStack, table: str) -> list[dict[str, Any]]:
    original, stack.table = stack.table, table
    try:
        return sorted(stack.items(), key=lambda i: (i["AccountId"], i["TransactionKey"]))
    finally:
        stack.table = original


Runner = Callable[[Job, ScaleOutSettings, str], dict[str, Any]]


def _by_steps(job: Job, settings: ScaleOutSettings, endpoint: str) -> dict[str, Any]:
    return asyncio.run(run_workflow(job, settings, endpoint))


def _compare(
    stack: IngestStack, key: str, data: bytes, range_bytes: int, runner: Runner = _by_steps
) -> dict[str, Any]:
    """Ingest ``data`` both ways; assert everything observable is equal; the workflow's result."""
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
    head = s3.head_object(Bucket=stack.bucket, Key=key)
    etag = head["ETag"].strip('"')
    env = stack.env()
    single = asyncio.run(
        ingest_object(
            stack.bucket,
            key,
            etag,
            settings=IngestSettings.from_env(env),
            session=aioboto3.Session(region_name="us-east-1"),
        )
    )
    single_report = stack.object_text(f"reports/{key}.rejected.csv")
    single_events = stack.summary_events(expected=single.events_published)
    table = _second_table(stack)
    settings = ScaleOutSettings.from_env(
        {**env, "TRANSACTIONS_TABLE": table, "RANGE_BYTES": str(range_bytes), "PARTITIONS": "3"}
    )
    s3.delete_object(Bucket=stack.bucket, Key=f"reports/{key}.rejected.csv")
    job = Job(stack.bucket, key, etag, import_id(stack.bucket, key, etag), len(data))
    result = runner(job, settings, stack.endpoint)
    assert result["path"] == "distributed"
    expected = single.to_json()
    for name in ("rowsRead", "rowsAccepted", "rowsRejected", "itemsWritten", "fileError"):
        assert result[name] == expected[name], name
    assert result["accounts"] == expected["accounts"]
    assert result["importId"] == expected["importId"]
    assert stack.object_text(f"reports/{key}.rejected.csv") == single_report
    events = stack.summary_events(expected=len(single_events))
    assert sorted(e["detail"]["summary"]["accountId"] for e in events) == sorted(
        e["detail"]["summary"]["accountId"] for e in single_events
    )
    by_account = {e["detail"]["summary"]["accountId"]: e["detail"] for e in single_events}
    for event in events:
        assert event["detail"] == by_account[event["detail"]["summary"]["accountId"]]
    assert _scan(stack, table) == _scan(stack, stack.table)
    return result


def test_a_generated_multi_account_file_is_identical_both_ways(
    moto_endpoint: str, unique: str
) -> None:
    """3,000 rows over 4 accounts with 2% bad rows, cut into 40 ranges: identical results."""
    stack = IngestStack(moto_endpoint, unique).create()
    out = io.StringIO(newline="")
    write_synthetic(SyntheticSpec(rows=3000, accounts=4, error_rate=0.02, seed=7), out)
    data = out.getvalue().encode()
    result = _compare(stack, "incoming/big.csv", data, range_bytes=max(1024, len(data) // 40))
    assert result["ranges"] >= 30


def test_adversarial_file_with_duplicates_across_ranges(moto_endpoint: str, unique: str) -> None:
    """Quoted line breaks over cuts, CRLF, a BOM, bad bytes, and ids repeated far apart."""
    stack = IngestStack(moto_endpoint, unique).create()
    rows = [b"\xef\xbb\xbfTransactionId,Date,Amount,AccountId,Memo\r\n"]
    for i in range(400):
        memo = b'"line\r\nbreak, ""quoted"""' if i % 7 == 0 else b"plain"
        account = b"A%d" % (i % 3)
        tx_id = b"%d" % (i % 150)  # every id comes back in later ranges
        amount = b"x1" if i % 53 == 0 else b"%d.%02d" % (i, i % 100)
        if i % 97 == 0:
            memo = b"bad\xffbyte"
        rows.append(b"%s,7/%d/2024,%s,%s,%s\r\n" % (tx_id, 1 + i % 28, amount, account, memo))
    data = b"".join(rows)
    result = _compare(stack, "incoming/adversarial.csv", data, range_bytes=1024)
    assert result["rowsRejected"] > 0


def test_a_rejected_file_is_rejected_the_same_way(moto_endpoint: str, unique: str) -> None:
    """bad_header: no items, the same one-line report, no events."""
    stack = IngestStack(moto_endpoint, unique).create()
    result = _compare(stack, "incoming/A1/bad.csv", b"Id,When,Transaction\n1,7/15,1\n", 1024)
    assert result["fileError"] == "bad_header"
    assert result["ranges"] == 0


def test_scratch_data_stays_under_its_prefix(moto_endpoint: str, unique: str) -> None:
    """The workflow writes only its scratch prefix and the report (never incoming/)."""
    stack = IngestStack(moto_endpoint, unique).create()
    data = b"Id,Date,Transaction\n" + b"".join(b"%d,7/15,%d\n" % (i, i) for i in range(300))
    _compare(stack, "incoming/A1/x.csv", data, range_bytes=1024)
    keys = [
        o["Key"]
        for o in boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint)
        .list_objects_v2(Bucket=stack.bucket)
        .get("Contents", [])
    ]
    assert {k.split("/")[0] for k in keys} <= {"incoming", "scaleout"}
    assert any(k.startswith("scaleout/") for k in keys)
