"""Injected DynamoDB ``UnprocessedItems``/throttling and EventBridge failed entries.

Faults are injected with botocore's own event hooks on the aiobotocore clients (the seam
every request passes through), in front of the real moto server: a dropped item is really
not sent, so moto holds exactly what the pipeline managed to deliver.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aioboto3
import pytest

from stori_pipeline.errors import RetriesExhaustedError
from stori_pipeline.ingest import ingest_object
from stori_pipeline.retry import RetryPolicy, set_testing
from stori_pipeline.synthetic import SyntheticSpec, write_synthetic
from tests.integration.ingest_stack import IngestStack

THROTTLED = "ProvisionedThroughputExceededException"


@pytest.fixture(autouse=True)
def _no_backoff_sleeps() -> Iterator[None]:
    """Retry backoffs never sleep in tests."""
    set_testing(True)
    yield
    set_testing(False)


@pytest.fixture
def stack(aws_endpoint: str, unique: str) -> IngestStack:
    """This test's bucket, tables, bus and capture queues."""
    return IngestStack(aws_endpoint, unique).create()


def synthetic(rows: int, accounts: int) -> bytes:
    """A generated Go-style file."""
    out = io.StringIO()
    write_synthetic(SyntheticSpec(rows=rows, accounts=accounts, seed=7), out)
    return out.getvalue().encode()


@dataclass
class _Status:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class DynamoFaults:
    """Every 5th BatchWriteItem is throttled; every odd one has half its items left over."""

    table: str
    limit: int = 80
    throttle_always: bool = False
    calls: int = 0
    throttled: int = 0
    unprocessed: int = 0
    written: Counter[tuple[str, str]] = field(default_factory=Counter)

    def params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        """Decide this request's fault; drop half the items from what is really sent."""
        if self.table not in params["RequestItems"]:
            return  # the version ledger's own writes (objects table) pass untouched
        self.calls += 1
        if self.throttle_always or (self.calls <= self.limit and self.calls % 5 == 0):
            context["throttle"] = True
            return
        requests = params["RequestItems"][self.table]
        if self.calls <= self.limit and self.calls % 2 == 1 and len(requests) > 1:
            half = len(requests) // 2
            params["RequestItems"][self.table] = requests[:half]
            context["unprocessed"] = requests[half:]
        context["sent"] = params["RequestItems"][self.table]

    def before_call(self, context: dict[str, Any], **_: Any) -> Any:
        """Answer a throttled request without sending it."""
        if not context.get("throttle"):
            return None
        self.throttled += 1
        error = {"Error": {"Code": THROTTLED, "Message": "injected"}, "ResponseMetadata": {}}
        return _Status(400), error

    def after_call(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        """Count what moto stored; report the dropped half as ``UnprocessedItems``."""
        for request in context.get("sent", ()):
            item = request["PutRequest"]["Item"]
            self.written[item["AccountId"]["S"], item["TransactionKey"]["S"]] += 1
        leftover = context.get("unprocessed")
        if leftover:
            self.unprocessed += len(leftover)
            parsed.setdefault("UnprocessedItems", {}).setdefault(self.table, []).extend(leftover)


@dataclass
class EventFaults:
    """The first entry of every other PutEvents call "fails" (it is not sent)."""

    calls: int = 0
    failed: int = 0
    sizes: list[int] = field(default_factory=list)

    def params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        """Withhold the first entry of odd calls."""
        self.calls += 1
        self.sizes.append(len(params["Entries"]))
        if self.calls % 2 == 1:
            context["withheld"] = True
            params["Entries"] = params["Entries"][1:]

    def after_call(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        """Report the withheld entry as failed, in its position."""
        if context.get("withheld"):
            self.failed += 1
            failure = {"ErrorCode": "InternalFailure", "ErrorMessage": "injected"}
            parsed["Entries"] = [failure, *parsed.get("Entries", [])]
            parsed["FailedEntryCount"] = parsed.get("FailedEntryCount", 0) + 1


async def run(
    stack: IngestStack,
    key: str,
    dynamo_faults: DynamoFaults,
    event_faults: EventFaults | None = None,
    policy: RetryPolicy | None = None,
) -> Any:
    """Ingest ``key`` with fault hooks on the injected clients."""
    session = aioboto3.Session(region_name="us-east-1")
    settings = stack.settings()
    endpoint = stack.endpoint
    async with (
        session.client("s3", endpoint_url=endpoint) as s3,
        session.client("dynamodb", endpoint_url=endpoint) as dynamodb,
        session.client("events", endpoint_url=endpoint) as events,
    ):
        hooks = dynamodb.meta.events
        hooks.register("provide-client-params.dynamodb.BatchWriteItem", dynamo_faults.params)
        hooks.register("before-call.dynamodb.BatchWriteItem", dynamo_faults.before_call)
        hooks.register("after-call.dynamodb.BatchWriteItem", dynamo_faults.after_call)
        if event_faults is not None:
            events.meta.events.register(
                "provide-client-params.eventbridge.PutEvents", event_faults.params
            )
            events.meta.events.register("after-call.eventbridge.PutEvents", event_faults.after_call)
        return await ingest_object(
            stack.bucket,
            key,
            stack.client("s3").head_object(Bucket=stack.bucket, Key=key)["ETag"].strip('"'),
            settings=settings,
            s3=s3,
            dynamodb=dynamodb,
            events=events,
            policy=policy or RetryPolicy(max_attempts=20),
        )


async def test_unprocessed_and_throttled_writes_land_exactly_once(stack: IngestStack) -> None:
    """Under injected UnprocessedItems and throttling every row is stored exactly once."""
    key = "incoming/many/faulty.csv"
    stack.upload(key, synthetic(rows=2_000, accounts=3))
    faults = DynamoFaults(stack.table)

    result = await run(stack, key, faults)

    assert faults.throttled > 0
    assert faults.unprocessed > 0
    assert result.rows_accepted == result.items_written == 2_000
    assert len(faults.written) == 2_000
    assert set(faults.written.values()) == {1}
    stored = {(i["AccountId"], i["TransactionKey"]) for i in stack.items()}
    assert stored == set(faults.written)


async def test_throttling_that_never_ends_fails_the_invocation(stack: IngestStack) -> None:
    """When retries run out the error surfaces as RetriesExhaustedError and no event is sent."""
    key = "incoming/A1/throttled.csv"
    stack.upload(key, synthetic(rows=100, accounts=1))
    faults = DynamoFaults(stack.table, throttle_always=True)

    with pytest.raises(RetriesExhaustedError) as caught:
        await run(stack, key, faults, policy=RetryPolicy(max_attempts=3))

    assert caught.value.attempts == 3
    assert caught.value.code == THROTTLED
    assert stack.summary_events() == []
    # The failed ingest gave its object's lease back: a retry need not wait for it to expire.
    (marker,) = stack.client("dynamodb").scan(TableName=stack.objects_table)["Items"]
    assert "LeaseETag" not in marker


async def test_failed_event_entries_are_resent_alone_in_calls_of_at_most_ten(
    stack: IngestStack,
) -> None:
    """With failed PutEvents entries, each of 23 accounts still gets exactly one event."""
    key = "incoming/many/accounts.csv"
    stack.upload(key, synthetic(rows=600, accounts=23))
    events = EventFaults()

    result = await run(stack, key, DynamoFaults(stack.table, limit=0), events)

    assert events.failed > 0
    assert max(events.sizes) <= 10
    received = stack.summary_events(expected=23)
    accounts = Counter(e["detail"]["summary"]["accountId"] for e in received)
    assert len(accounts) == result.events_published == 23
    assert set(accounts.values()) == {1}
