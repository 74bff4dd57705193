"""Injected DynamoDB ``UnprocessedItems``/throttling/lost answers and EventBridge failed entries.

DynamoDB faults are injected on the wire by a proxy in front of the real moto server
(``fault_proxy``), the seam shared by the lean request path and the SDK path, and every DynamoDB
test runs on both; a dropped item is really not forwarded, so moto holds exactly what the
pipeline managed to deliver. EventBridge faults use botocore's event hooks on the client.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aioboto3
import pytest
from aiobotocore.config import AioConfig
from botocore.credentials import ReadOnlyCredentials

from stori_pipeline.errors import AwsOperationError, RetriesExhaustedError
from stori_pipeline.ingest import dynamodb as dynamodb_sink
from stori_pipeline.ingest import ingest_object
from stori_pipeline.retry import RetryPolicy
from stori_pipeline.synthetic import SyntheticSpec, write_synthetic
from tests.integration.fault_proxy import THROTTLED, DynamoWire, Fault, fault_proxy
from tests.integration.ingest_stack import IngestStack

LEAN_AGENT = "stori-pipeline lean-dynamodb"
SESSION_TOKEN = "lambda-session-token"


pytestmark = pytest.mark.usefixtures("no_backoff_sleeps")  # retry backoffs never sleep


@pytest.fixture
def stack(aws_endpoint: str, unique: str) -> IngestStack:
    """This test's bucket, tables, bus and capture queues."""
    return IngestStack(aws_endpoint, unique).create()


@pytest.fixture(params=["lean", "sdk"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each DynamoDB test runs on the lean request path and on the SDK client's path.

    Lambda's credentials carry a session token; the tests' do too, so signing covers it.
    """
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    if request.param == "sdk":
        monkeypatch.setattr(dynamodb_sink, "lean_client_for", lambda _client: None)
    return str(request.param)


def wire(stack: IngestStack, decide: Any) -> DynamoWire:
    """A fault plan for ``stack``'s table whose every request's signature is checked."""
    return DynamoWire(
        stack.table, decide, credentials=ReadOnlyCredentials("testing", "testing", SESSION_TOKEN)
    )


def assert_path(path: str, seen: DynamoWire) -> None:
    """Every request went the expected path, signed with the session token."""
    assert seen.bad_signatures == 0
    assert set(seen.tokens) == {SESSION_TOKEN}
    if path == "lean":
        assert set(seen.user_agents) == {LEAN_AGENT}
    else:
        assert LEAN_AGENT not in seen.user_agents


def synthetic(rows: int, accounts: int) -> bytes:
    """A generated Go-style file."""
    out = io.StringIO()
    write_synthetic(SyntheticSpec(rows=rows, accounts=accounts, seed=7), out)
    return out.getvalue().encode()


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


def every_fifth_throttled_odd_half_unprocessed(limit: int = 80) -> Any:
    """Every 5th BatchWriteItem is throttled; every other odd one has half its items left."""

    def decide(call: int) -> Fault:
        if call > limit:
            return Fault()
        if call % 5 == 0:
            return Fault(status=400, code=THROTTLED)
        return Fault(drop_half=call % 2 == 1)

    return decide


async def run(
    stack: IngestStack,
    key: str,
    dynamo_wire: DynamoWire,
    event_faults: EventFaults | None = None,
    policy: RetryPolicy | None = None,
    num_workers: int = 4,
    sdk_retries: int | None = None,
) -> Any:
    """Ingest ``key`` with DynamoDB behind the fault proxy and hooks on the events client."""
    session = aioboto3.Session(region_name="us-east-1")
    settings = stack.settings(num_workers)
    endpoint = stack.endpoint
    async with (
        fault_proxy(endpoint, dynamo_wire) as proxy,
        session.client("s3", endpoint_url=endpoint) as s3,
        session.client(
            "dynamodb",
            endpoint_url=proxy,
            config=AioConfig(retries={"total_max_attempts": sdk_retries} if sdk_retries else None),
        ) as dynamodb,
        session.client("events", endpoint_url=endpoint) as events,
    ):
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


def assert_stored_exactly_once(stack: IngestStack, seen: DynamoWire, rows: int) -> None:
    """Moto holds exactly the items that went through, each sent (successfully) once."""
    assert len(seen.written) == rows
    assert set(seen.written.values()) == {1}
    stored = {(i["AccountId"], i["TransactionKey"]) for i in stack.items()}
    assert stored == set(seen.written)


async def test_unprocessed_and_throttled_writes_land_exactly_once(
    stack: IngestStack, path: str
) -> None:
    """Under injected UnprocessedItems and throttling every row is stored exactly once."""
    key = "incoming/many/faulty.csv"
    stack.upload(key, synthetic(rows=2_000, accounts=3))
    seen = wire(stack, every_fifth_throttled_odd_half_unprocessed())

    result = await run(stack, key, seen)

    assert seen.faults[THROTTLED] > 0
    assert seen.faults["unprocessed"] > 0
    assert result.rows_accepted == result.items_written == 2_000
    assert_stored_exactly_once(stack, seen, 2_000)
    assert_path(path, seen)


async def test_lost_connections_server_errors_and_corrupt_answers_are_resent(
    stack: IngestStack, path: str
) -> None:
    """A dropped connection, a 503 and a CRC32 mismatch are re-sent; rows land exactly once."""
    key = "incoming/many/flaky.csv"
    stack.upload(key, synthetic(rows=1_000, accounts=2))
    plan = {1: Fault(disconnect=True), 2: Fault(status=503, code="ServiceUnavailable")}
    plan[3] = Fault(corrupt_crc=True)
    seen = wire(stack, lambda call: plan[call % 4] if call <= 24 and call % 4 in plan else Fault())

    result = await run(stack, key, seen)

    assert seen.faults["disconnect"] > 0
    assert seen.faults["ServiceUnavailable"] > 0
    assert seen.faults["crc"] > 0
    assert result.items_written == 1_000
    # A corrupt answer's items did reach moto: they are stored twice, as an idempotent put.
    assert len(seen.written) == 1_000
    stored = {(i["AccountId"], i["TransactionKey"]) for i in stack.items()}
    assert stored == set(seen.written)
    assert_path(path, seen)


async def test_throttling_that_never_ends_fails_the_invocation(
    stack: IngestStack, path: str
) -> None:
    """When retries run out the error surfaces as RetriesExhaustedError and no event is sent."""
    key = "incoming/A1/throttled.csv"
    stack.upload(key, synthetic(rows=100, accounts=1))
    seen = wire(stack, lambda _call: Fault(status=400, code=THROTTLED))

    with pytest.raises(RetriesExhaustedError) as caught:
        # botocore's own retry layer (SDK path only) would sleep for real between its tries.
        await run(stack, key, seen, policy=RetryPolicy(max_attempts=3), sdk_retries=1)

    assert caught.value.attempts == 3
    assert caught.value.code == THROTTLED
    assert stack.summary_events() == []
    assert_path(path, seen)


async def test_a_rejected_request_fails_at_once_with_its_error_code(
    stack: IngestStack, path: str
) -> None:
    """A non-throttling 4xx is not retried: AwsOperationError with DynamoDB's code."""
    key = "incoming/A1/invalid.csv"
    stack.upload(key, synthetic(rows=100, accounts=1))
    seen = wire(stack, lambda _call: Fault(status=400, code="ValidationException"))

    with pytest.raises(AwsOperationError) as caught:
        await run(stack, key, seen, num_workers=1)

    assert not isinstance(caught.value, RetriesExhaustedError)
    assert caught.value.code == "ValidationException"
    assert seen.calls == 1
    assert stack.summary_events() == []
    assert_path(path, seen)


async def test_failed_event_entries_are_resent_alone_in_calls_of_at_most_ten(
    stack: IngestStack,
) -> None:
    """With failed PutEvents entries, each of 23 accounts still gets exactly one event."""
    key = "incoming/many/accounts.csv"
    stack.upload(key, synthetic(rows=600, accounts=23))
    events = EventFaults()

    result = await run(stack, key, wire(stack, lambda _call: Fault()), events)

    assert events.failed > 0
    assert max(events.sizes) <= 10
    received = stack.summary_events(expected=23)
    accounts = Counter(e["detail"]["summary"]["accountId"] for e in received)
    assert len(accounts) == result.events_published == 23
    assert set(accounts.values()) == {1}
