"""The ingest pipeline: one S3 object -> DynamoDB items -> one summary event per account.

Shape (SPEC §7, STYLE "structured concurrency")::

    S3 body ─► TransactionStream ─► reader ─► Queue(maxsize=2·N) ─► N workers ─► BatchWriteItem
                     │ rejections ─► spooled CSV report ─► s3://bucket/reports/<key>.rejected.csv
                     └ summaries (after every batch is written) ─► PutEvents

One ``asyncio.TaskGroup`` owns the reader and the workers. The queue is bounded, so a slow
table slows the S3 read instead of buffering the file; one ``None`` per worker ends the run,
and a failure in any task cancels the others and surfaces. Events are published only after
every item is written, so a summary never describes rows the table does not hold.

The orchestration (:func:`ingest_stream`) talks to three small Protocols; the AWS adapters in
this package implement them, and :func:`ingest_object` wires them to aioboto3 clients.
"""

from __future__ import annotations

import asyncio
import operator
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Protocol

from aiobotocore.config import AioConfig

from stori_pipeline.gc_pause import collections_deferred
from stori_pipeline.ingest.claim_check import S3SummaryStore
from stori_pipeline.ingest.dynamodb import MAX_BATCH_ITEMS, DynamoDBTransactionSink
from stori_pipeline.ingest.events import EventBridgePublisher, SummaryStore, summary_entries
from stori_pipeline.ingest.keys import account_from_key, import_id, report_key
from stori_pipeline.ingest.s3 import RejectionReport, open_object
from stori_pipeline.ingest.versions import ObjectVersion, VersionLedger
from stori_pipeline.records import Rejection, Transaction
from stori_pipeline.retry import RetryPolicy
from stori_pipeline.settings import IngestSettings
from stori_pipeline.stream import ImportResult, TransactionStream
from stori_pipeline.summary import AccountSummaries, AccountSummary

__all__ = [
    "EventPublisher",
    "IngestResult",
    "RejectionSink",
    "TransactionSink",
    "fan_out",
    "finish_import",
    "ingest_object",
    "ingest_stream",
]


class TransactionSink(Protocol):
    """Stores accepted transactions; ``write`` takes at most 25 and returns items written."""

    async def write(self, batch: Sequence[Transaction]) -> int:
        """Store one batch; raise when it cannot be stored after retries."""
        ...


class EventPublisher(Protocol):
    """Publishes summary events."""

    def entry(self, detail: dict[str, object], account_id: str) -> dict[str, Any]:
        """The entry of one detail; raises ``EventTooLargeError`` when it cannot be sent."""
        ...

    async def publish(self, entries: Sequence[dict[str, Any]]) -> int:
        """Send the entries; return how many were published."""
        ...


class VersionReplacer(Protocol):
    """Makes the version just written the object's only rows (``versions.VersionLedger``)."""

    async def replace(self, accounts: Iterable[str]) -> int:
        """Delete the rows of other versions; return how many items were deleted."""
        ...


class RejectionSink(Protocol):
    """Collects rejected rows and writes the report."""

    count: int

    def add(self, rejection: Rejection) -> None:
        """Record one rejected row (called synchronously, in file order)."""

    def add_file_error(self, code: str, *, line: int = 0, detail: str = "") -> None:
        """Record a file-level rejection: its code, the line where, and what was wrong."""

    async def finish(self) -> str | None:
        """Store the report when it holds a row and return where; else ``None``."""
        ...


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What ingesting one object did.

    ``file_error`` is a SPEC §2 file-level code (nothing written, no events) and
    ``file_error_detail`` says why in words (which column is missing …);
    ``events_referenced`` lists accounts whose summary was too large for its event and was
    claim-checked (stored in S3, referenced by a ``schemaVersion`` 2 event);
    ``duration`` is wall-clock seconds; ``summaries`` are the import's
    (``ImportResult.accounts``: read one account at a time from the file's ledger).
    """

    import_id: str
    bucket: str
    key: str
    etag: str
    rows_read: int
    rows_accepted: int
    rows_rejected: int
    items_written: int
    events_published: int
    file_error: str | None
    report_key: str | None
    summaries: Sequence[AccountSummary]
    duration: float
    events_referenced: tuple[str, ...] = ()
    items_deleted: int = 0
    file_error_detail: str | None = None

    def to_json(self) -> dict[str, object]:
        """A JSON-ready view (the handler's return value; summaries as account ids)."""
        return {
            "importId": self.import_id,
            "bucket": self.bucket,
            "key": self.key,
            "etag": self.etag,
            "rowsRead": self.rows_read,
            "rowsAccepted": self.rows_accepted,
            "rowsRejected": self.rows_rejected,
            "itemsWritten": self.items_written,
            "itemsDeleted": self.items_deleted,
            "eventsPublished": self.events_published,
            "eventsReferenced": list(self.events_referenced),
            "fileError": self.file_error,
            "fileErrorDetail": self.file_error_detail,
            "reportKey": self.report_key,
            "accounts": list(
                self.summaries.account_ids()  # the ids alone: no summary is built
                if isinstance(self.summaries, AccountSummaries)
                else (s.account_id for s in self.summaries)
            ),
            "durationSeconds": round(self.duration, 3),
        }


async def fan_out(
    stream: AsyncIterable[list[Transaction]],
    sink: TransactionSink,
    num_workers: int,
    accounts: set[str],
) -> int:
    """Write every batch of ``stream`` with ``num_workers`` writers; return the count.

    The accounts of the rows written are added to ``accounts``.
    """
    queue: asyncio.Queue[list[Transaction] | None] = asyncio.Queue(maxsize=2 * num_workers)
    written = [0] * num_workers
    account_of = operator.attrgetter("account_id")

    async def reader() -> None:
        async for batch in stream:
            # The written rows' accounts, also for a file cut short by malformed_csv (whose
            # result has no summaries): the version ledger must know where rows went.
            accounts.update(map(account_of, batch))
            for start in range(0, len(batch), MAX_BATCH_ITEMS):
                await queue.put(batch[start : start + MAX_BATCH_ITEMS])
        for _ in range(num_workers):
            await queue.put(None)

    async def worker(index: int) -> None:
        while (batch := await queue.get()) is not None:
            written[index] += await sink.write(batch)

    try:
        # The ledger's buckets are no garbage to look for (gc_pause); young collections go on.
        with collections_deferred():
            async with asyncio.TaskGroup() as group:
                group.create_task(reader(), name="ingest-reader")
                for index in range(num_workers):
                    group.create_task(worker(index), name=f"ingest-worker-{index}")
    except ExceptionGroup as failure:
        # Callers (and Lambda) want the error that stopped the run, not a group wrapper;
        # the other leaves are almost always the same failure seen by sibling workers.
        raise _first_leaf(failure) from failure
    return sum(written)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


async def ingest_stream(  # noqa: PLR0913 - the object's identity plus the three ports
    chunks: AsyncIterable[bytes],
    *,
    bucket: str,
    key: str,
    etag: str,
    sink: TransactionSink,
    publisher: EventPublisher,
    summaries: SummaryStore,
    report: RejectionSink,
    num_workers: int,
    versions: VersionReplacer | None = None,
) -> IngestResult:
    """Run the pipeline over one object's bytes.

    Order matters for at-least-once delivery: items, then the report, then the previous
    version's rows are removed (``versions``; even for a rejected file, whose accepted rows —
    none, or those before a ``malformed_csv`` break — are now the object's), then the events,
    so the events (the signal downstream acts on) are sent only once everything else is stored.
    """
    started = time.perf_counter()
    stream = TransactionStream(chunks, account=account_from_key(key), on_reject=report.add)
    accounts: set[str] = set()
    items_written = await fan_out(stream, sink, num_workers, accounts)
    return await finish_import(
        stream.result(),
        bucket=bucket,
        key=key,
        etag=etag,
        items_written=items_written,
        accounts=accounts,
        publisher=publisher,
        summaries=summaries,
        report=report,
        versions=versions,
        started=started,
    )


async def finish_import(  # noqa: PLR0913 - the object's identity, the result and the ports
    result: ImportResult,
    *,
    bucket: str,
    key: str,
    etag: str,
    items_written: int,
    accounts: set[str],
    publisher: EventPublisher,
    summaries: SummaryStore,
    report: RejectionSink,
    versions: VersionReplacer | None,
    started: float,
) -> IngestResult:
    """Everything after the items: report, the previous version's rows, then the events.

    The single path calls it once its items are written; the distributed path
    (:mod:`stori_pipeline.scaleout`) once every slice's are, with the merged result and every
    slice's accounts — so both end an import exactly the same way.
    """
    ident = import_id(bucket, key, etag)
    published, referenced = 0, list[str]()
    if result.file_error is not None:
        report.add_file_error(
            str(result.file_error),
            line=result.file_error_line or 0,
            detail=result.file_error_detail or "",
        )
    stored_report = await report.finish()
    items_deleted = 0
    if versions is not None:
        items_deleted = await versions.replace(accounts)
    if result.file_error is None:
        entries, referenced = await summary_entries(
            publisher,
            summaries,
            import_id=ident,
            bucket=bucket,
            key=key,
            etag=etag,
            rows_rejected=result.rows_rejected,
            summaries=result.accounts,
        )
        published = await publisher.publish(entries) if entries else 0
    return IngestResult(
        import_id=ident,
        bucket=bucket,
        key=key,
        etag=etag,
        rows_read=result.rows_read,
        rows_accepted=result.rows_accepted,
        rows_rejected=result.rows_rejected,
        items_written=items_written,
        events_published=published,
        file_error=None if result.file_error is None else str(result.file_error),
        report_key=stored_report,
        summaries=result.accounts,
        duration=time.perf_counter() - started,
        events_referenced=tuple(referenced),
        items_deleted=items_deleted,
        file_error_detail=result.file_error_detail,
    )


async def ingest_object(  # noqa: PLR0913 - clients are injectable one by one
    bucket: str,
    key: str | Sequence[str],
    etag: str,
    *,
    settings: IngestSettings,
    s3: Any = None,  # noqa: ANN401 - aiobotocore clients are untyped
    dynamodb: Any = None,  # noqa: ANN401
    events: Any = None,  # noqa: ANN401
    session: Any = None,  # noqa: ANN401 - an aioboto3.Session
    policy: RetryPolicy | None = None,
    version_id: str | None = None,
    sequencer: str | None = None,
) -> IngestResult:
    """Ingest one S3 object end to end (SPEC §4, §5).

    Args:
        bucket: the bucket.
        key: the object key, or candidate keys in order (see ``keys.key_candidates``);
            the first that exists is read.
        etag: the ETag from the event; a different version of the object is not read.
        settings: table, bus, worker count and attempts.
        s3: an aioboto3 S3 client; built (and closed) here when ``None``.
        dynamodb: a DynamoDB client; built here when ``None``.
        events: an EventBridge client; built here when ``None``.
        session: the aioboto3 session used to build missing clients.
        policy: retry policy; by default ``settings.max_attempts`` with the default backoff.
        version_id: the event's ``version-id`` (versioned buckets): read that version.
        sequencer: the event's ``sequencer``, normalized (``keys.normalize_sequencer``):
            orders versions of the key (``versions``); ``None`` when the event has none.

    Raises:
        ObjectGoneError: the object no longer exists with that ETag (permanent).
        ObjectSupersededError: a newer version of the key is ingested or in progress
            (permanent: nothing written, no events).
        ObjectBusyError, LeaseLostError: another version of the key is in the way (transient).
        RetriesExhaustedError: DynamoDB or EventBridge kept failing (transient: retry later).
        AwsOperationError: any other AWS failure.
    """
    keys = (key,) if isinstance(key, str) else tuple(key)
    policy = policy or RetryPolicy(max_attempts=settings.max_attempts)
    async with AsyncExitStack() as stack:
        if s3 is None or dynamodb is None or events is None:
            if session is None:
                import aioboto3  # noqa: PLC0415 - only needed when clients are not injected

                session = aioboto3.Session()
            # One connection per worker: the default pool of 10 would cap the concurrency.
            config = AioConfig(max_pool_connections=max(10, settings.num_workers + 2))
            s3 = s3 or await stack.enter_async_context(session.client("s3", config=config))
            # Items are built already typed (``transaction_item``); botocore's parameter
            # validation of 25 x 12 attributes per request was ~40% of the client's CPU.
            dynamodb = dynamodb or await stack.enter_async_context(
                session.client(
                    "dynamodb", config=config.merge(AioConfig(parameter_validation=False))
                )
            )
            events = events or await stack.enter_async_context(
                session.client("events", config=config)
            )
        first = AsyncExitStack()
        opened = await first.enter_async_context(
            open_object(s3, bucket, keys, etag, version_id=version_id)
        )
        ledger = VersionLedger(
            dynamodb,
            objects_table=settings.objects_table,
            transactions_table=settings.transactions_table,
            version=ObjectVersion(bucket, opened.key, etag, sequencer, version_id),
            policy=policy,
        )
        try:
            waited = await ledger.acquire()
        except BaseException:
            await first.aclose()
            raise
        # From here a failure gives the lease back, so a retry need not wait for it to expire.
        stack.push_async_exit(_release_on_failure(ledger))
        if waited:
            # The body sat unread while another version finished; read it afresh.
            await first.aclose()
            first = AsyncExitStack()
            opened = await first.enter_async_context(
                open_object(s3, bucket, (opened.key,), etag, version_id=version_id)
            )
        stack.push_async_callback(first.aclose)
        report = stack.enter_context(RejectionReport(s3, bucket, report_key(opened.key)))
        return await ingest_stream(
            opened.chunks,
            bucket=bucket,
            key=opened.key,
            etag=etag,
            sink=DynamoDBTransactionSink(
                dynamodb,
                settings.transactions_table,
                bucket=bucket,
                key=opened.key,
                etag=etag,
                policy=policy,
            ),
            publisher=EventBridgePublisher(events, settings.event_bus_name, policy=policy),
            summaries=S3SummaryStore(s3, bucket, policy=policy),
            report=report,
            num_workers=settings.num_workers,
            versions=ledger,
        )


def _release_on_failure(
    ledger: VersionLedger,
) -> Callable[[type[BaseException] | None, BaseException | None, object], Awaitable[bool]]:
    async def exit_(
        exc_type: type[BaseException] | None, _exc: BaseException | None, _tb: object
    ) -> bool:
        if exc_type is not None:
            await ledger.release()
        return False

    return exit_
