"""The ingest orchestration against in-memory ports: batching, backpressure, failure, items."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

import pytest

from stori_pipeline.ingest.dynamodb import DynamoDBTransactionSink, transaction_item
from stori_pipeline.ingest.events import EventBridgePublisher, EventTooLargeError
from stori_pipeline.ingest.pipeline import ingest_stream
from stori_pipeline.records import Rejection, Transaction
from stori_pipeline.retry import RetryPolicy


def file_bytes(rows: int) -> bytes:
    """A challenge-style file of ``rows`` valid rows."""
    body = "".join(f"{n},7/{n % 28 + 1},-{n % 90 + 1}.25\n" for n in range(rows))
    return ("Id,Date,Transaction\n" + body).encode()


class Chunks:
    """An async byte source that counts how much of the file was pulled."""

    def __init__(self, data: bytes, size: int = 1024) -> None:
        self.data, self.size, self.pulled = data, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.size):
            self.pulled = start + self.size
            yield self.data[start : start + self.size]


class Sink:
    """Records batches; optionally blocks until released, or fails on a given call."""

    def __init__(self, *, gate: asyncio.Event | None = None, fail_on: int = 0) -> None:
        self.batches: list[list[Transaction]] = []
        self.gate, self.fail_on, self.calls = gate, fail_on, 0

    async def write(self, batch: Sequence[Transaction]) -> int:
        """Store a batch (fake)."""
        self.calls += 1
        if self.calls == self.fail_on:
            raise LookupError("sink broke")
        if self.gate is not None:
            await self.gate.wait()
        self.batches.append(list(batch))
        return len(batch)


class Publisher:
    """Records published entries."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def entry(self, detail: dict[str, object], account_id: str) -> dict[str, Any]:
        """Wrap a detail (fake)."""
        return {"account": account_id, "detail": detail}

    async def publish(self, entries: Sequence[dict[str, Any]]) -> int:
        """Record entries (fake)."""
        self.entries += entries
        return len(entries)


class Report:
    """Records rejections; ``finish`` names a report only when something was rejected."""

    def __init__(self) -> None:
        self.count = 0
        self.rows: list[tuple[int, str, str]] = []

    def add(self, rejection: Rejection) -> None:
        """Record a rejection (fake)."""
        self.count += 1
        self.rows.append((rejection.line, rejection.id, str(rejection.code)))

    def add_file_error(self, code: str, *, line: int = 0, detail: str = "") -> None:
        """Record a file error (fake)."""
        self.count += 1
        self.rows.append((line, detail, code))

    async def finish(self) -> str | None:
        """Name the report when non-empty (fake)."""
        return "the-report" if self.count else None


class Store:
    """Records claim-checked summaries."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    async def put(self, key: str, body: bytes) -> dict[str, object]:
        """Keep the body (fake)."""
        self.objects[key] = body
        return {"bucket": "b", "key": key, "bytes": len(body)}


async def run(chunks: Chunks, sink: Sink, publisher: Publisher, report: Report, workers: int = 3):  # type: ignore[no-untyped-def]
    """ingest_stream with the fakes, for key incoming/A1/f.csv."""
    return await ingest_stream(
        chunks,
        bucket="b",
        key="incoming/A1/f.csv",
        etag="e",
        sink=sink,
        publisher=publisher,
        summaries=Store(),
        report=report,
        num_workers=workers,
    )


async def test_every_row_is_written_in_batches_of_at_most_25() -> None:
    """1,234 rows reach the sink once each, in batches of ≤ 25; then one event is published."""
    sink, publisher = Sink(), Publisher()
    result = await run(Chunks(file_bytes(1_234)), sink, publisher, Report())
    assert max(len(b) for b in sink.batches) == 25
    ids = sorted(int(tx.transaction_id) for b in sink.batches for tx in b)
    assert ids == list(range(1_234))
    assert result.items_written == result.rows_accepted == 1_234
    assert [e["account"] for e in publisher.entries] == ["A1"]
    assert result.report_key is None


async def test_a_blocked_sink_stops_the_reader_early() -> None:
    """Backpressure: while the sink is stuck, only a bounded prefix of the file is read."""
    data = file_bytes(50_000)
    chunks, gate = Chunks(data), asyncio.Event()
    sink = Sink(gate=gate)
    task = asyncio.create_task(run(chunks, sink, Publisher(), Report(), workers=2))
    previous = -1
    for _ in range(10_000):  # let the reader run until it cannot progress any more
        await asyncio.sleep(0)
        if chunks.pulled == previous and sink.calls:
            break
        previous = chunks.pulled
    assert chunks.pulled < len(data) // 10
    gate.set()
    result = await task
    assert result.items_written == 50_000


async def test_a_failing_worker_surfaces_its_own_error_and_publishes_nothing() -> None:
    """A sink error cancels the group and is raised as itself; no event is sent."""
    publisher = Publisher()
    with pytest.raises(LookupError, match="sink broke"):
        await run(Chunks(file_bytes(2_000)), Sink(fail_on=7), publisher, Report())
    assert publisher.entries == []


async def test_file_level_rejection_writes_no_items_and_reports_where_and_what() -> None:
    """A bad header: nothing written, no event, the report names the header line and column."""
    sink, publisher, report = Sink(), Publisher(), Report()
    result = await run(Chunks(b"\nFoo,Date,Transaction\n1,7/1,+1\n"), sink, publisher, report)
    assert result.file_error == "bad_header"
    assert sink.batches == []
    assert publisher.entries == []
    ((line, detail, code),) = report.rows
    assert (line, code) == (2, "bad_header")
    assert "'id'" in detail
    assert result.report_key == "the-report"


def test_item_has_exactly_the_spec_attributes() -> None:
    """SPEC §4 item: typed values, exact Amount, Year present only when known."""
    with_year = Transaction("A1", "t-1", "8/2/2024", 2024, 8, -5, 3)
    assert transaction_item(with_year, bucket="b", key="incoming/A1/f.csv", etag="e") == {
        "AccountId": {"S": "A1"},
        "TransactionKey": {"S": "incoming/A1/f.csv#t-1"},
        "TransactionId": {"S": "t-1"},
        "Date": {"S": "8/2/2024"},
        "Year": {"N": "2024"},
        "Month": {"N": "8"},
        "Amount": {"N": "-0.05"},
        "Kind": {"S": "debit"},
        "SourceBucket": {"S": "b"},
        "SourceKey": {"S": "incoming/A1/f.csv"},
        "SourceETag": {"S": "e"},
        "Line": {"N": "3"},
    }
    no_year = transaction_item(
        Transaction("A1", "t", "7/15", None, 7, 123456789012345, 2), bucket="b", key="k", etag="e"
    )
    assert "Year" not in no_year
    assert Decimal(no_year["Amount"]["N"]) == Decimal("1234567890123.45")


class RecordingDynamo:
    """A DynamoDB client seam that stores requests and answers success."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        """Record the request; all processed (fake)."""
        self.requests.append(kwargs["RequestItems"])
        return {"UnprocessedItems": {}}


async def test_one_request_never_holds_the_same_key_twice() -> None:
    """Two rows with one key in a batch become one PutRequest (the later row wins)."""
    client = RecordingDynamo()
    sink = DynamoDBTransactionSink(client, "t", bucket="b", key="k", etag="e", policy=RetryPolicy())
    written = await sink.write(
        [
            Transaction("A1", "1", "7/1", None, 7, 100, 2),
            Transaction("A2", "1", "7/1", None, 7, 100, 3),
            Transaction("A1", "1", "7/2", None, 7, 200, 4),
        ]
    )
    assert written == 2
    (request,) = client.requests
    items = [r["PutRequest"]["Item"] for r in request["t"]]
    assert [(i["AccountId"]["S"], i["Line"]["N"]) for i in items] == [("A1", "4"), ("A2", "3")]


def test_an_event_over_256_kb_is_refused_before_sending() -> None:
    """An entry of 256 KB or more raises EventTooLargeError naming the account."""
    publisher = EventBridgePublisher(object(), "bus", policy=RetryPolicy())
    assert publisher.entry({"x": "y" * 1000}, "A1")["Source"] == "stori.pipeline"
    with pytest.raises(EventTooLargeError) as caught:
        publisher.entry({"x": "y" * 262_144}, "A1")
    assert caught.value.account_id == "A1"
