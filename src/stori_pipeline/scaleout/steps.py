"""The workflow's steps: what each Lambda task of the state machine does (S3, DynamoDB, events).

The state machine (``statemachine/ingest.asl.json``) passes only small descriptors; every
step reads and writes its data under the object's scratch prefix
``scaleout/<importId>/`` in the transactions bucket (the processing rule matches only
``incoming/``, and a lifecycle rule expires the prefix). Every step is idempotent — it
rewrites the same scratch objects and the same items — so Step Functions may retry any of
them::

    plan ─► scan (map over ranges) ─► link ─► fingerprint (map over slices) ─► cut
         ─► resolve (map over partitions) ─► commit (map over slices) ─► reduce

``reduce`` publishes exactly what the single path publishes, through the same
:func:`~stori_pipeline.ingest.pipeline.finish_import`: report, then events.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from stori_pipeline.errors import AwsOperationError, PermanentError
from stori_pipeline.ingest.claim_check import S3SummaryStore
from stori_pipeline.ingest.dynamodb import DynamoDBTransactionSink
from stori_pipeline.ingest.events import EventBridgePublisher
from stori_pipeline.ingest.keys import account_from_key, report_key
from stori_pipeline.ingest.pipeline import IngestResult, fan_out, finish_import
from stori_pipeline.ingest.resend import error_code
from stori_pipeline.ingest.s3 import CHANGED_CODES, MISSING_CODES, ObjectGoneError, RejectionReport
from stori_pipeline.ingest.versions import ObjectVersion, VersionLedger
from stori_pipeline.records import FileErrorCode
from stori_pipeline.retry import RetryPolicy
from stori_pipeline.scaleout.ranges import (
    HeaderPlan,
    SliceCounts,
    fingerprint_slice,
    losers,
    merge_results,
    plan_header,
    with_header,
)
from stori_pipeline.scaleout.split import (
    RangeScan,
    Slice,
    adjust_cut,
    cut_points,
    link,
    scan_window,
)
from stori_pipeline.settings import ScaleOutSettings
from stori_pipeline.stream import ImportResult, TransactionStream

__all__ = ["STEPS", "Clients", "Job", "StepError", "run_step", "run_with_session"]

SCRATCH_PREFIX = "scaleout/"
_BODY_CHUNK = 256 * 1024
_FIRST_WINDOW = 1024 * 1024
# The scan reads this far past its range first, and twice as far each time it must go on.
_SCAN_OVERHANG = 64 * 1024
# Scratch objects read or written at once by one step.
_CONCURRENT_OBJECTS = 32
# The version lease must outlast a whole run of the workflow (a 100M-row file: ~45 min).
WORKFLOW_LEASE_SECONDS = 6 * 60 * 60


class StepError(PermanentError):
    """A step was called with a payload it cannot run (a wiring bug, not a data problem)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One object version being ingested by the workflow (the execution's input)."""

    bucket: str
    key: str
    etag: str
    import_id: str
    size: int
    version_id: str | None = None
    sequencer: str | None = None  # normalized (keys.normalize_sequencer), orders versions

    @property
    def scratch(self) -> str:
        """The prefix of this import's intermediate objects."""
        return f"{SCRATCH_PREFIX}{self.import_id}/"

    def to_json(self) -> dict[str, object]:
        """The execution input's ``job`` (far below Step Functions' 256 KB)."""
        return {
            "bucket": self.bucket,
            "key": self.key,
            "etag": self.etag,
            "importId": self.import_id,
            "size": self.size,
            "versionId": self.version_id,
            "sequencer": self.sequencer,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        """Inverse of :meth:`to_json`; raises :class:`StepError` on a malformed job."""
        try:
            version, sequencer = data.get("versionId"), data.get("sequencer")
            return cls(
                str(data["bucket"]),
                str(data["key"]),
                str(data["etag"]),
                str(data["importId"]),
                int(data["size"]),
                None if version is None else str(version),
                None if sequencer is None else str(sequencer),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StepError(f"malformed job: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Clients:
    """The aioboto3 clients a step may use (owned by the caller)."""

    s3: Any
    dynamodb: Any
    events: Any


class _Store:
    """The object being ingested and its scratch prefix."""

    def __init__(self, client: Any, job: Job) -> None:  # noqa: ANN401 - aiobotocore client
        self.client = client
        self.job = job

    async def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object version of the job."""
        return b"".join([chunk async for chunk in self.stream(start, end)])

    async def stream(self, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of the object, streamed in chunks (nothing when empty)."""
        end = min(end, self.job.size)
        if start >= end:
            return
        job = self.job
        version = {"VersionId": job.version_id} if job.version_id else {}
        try:
            response = await self.client.get_object(
                Bucket=job.bucket,
                Key=job.key,
                IfMatch=job.etag,
                Range=f"bytes={start}-{end - 1}",
                **version,
            )
        except ClientError as exc:
            code = error_code(exc)
            if code in MISSING_CODES | CHANGED_CODES:
                raise ObjectGoneError(job.bucket, (job.key,), job.etag, code) from exc
            raise AwsOperationError(
                str(exc), service="s3", operation="GetObject", code=code
            ) from exc
        body = response["Body"]
        # Entering the body returns the raw aiohttp response; keep the StreamingBody itself.
        async with body:
            async for chunk in body.iter_chunks(_BODY_CHUNK):
                yield chunk

    async def put(self, name: str, body: bytes) -> None:
        """Write one scratch object."""
        try:
            await self.client.put_object(
                Bucket=self.job.bucket, Key=self.job.scratch + name, Body=body
            )
        except ClientError as exc:
            raise AwsOperationError(
                str(exc), service="s3", operation="PutObject", code=error_code(exc)
            ) from exc

    async def get(self, name: str) -> bytes:
        """Read one scratch object."""
        try:
            response = await self.client.get_object(
                Bucket=self.job.bucket, Key=self.job.scratch + name
            )
            async with response["Body"] as body:
                return bytes(await body.read())
        except ClientError as exc:
            raise AwsOperationError(
                str(exc), service="s3", operation="GetObject", code=error_code(exc)
            ) from exc

    async def put_json(self, name: str, value: object) -> None:
        """Write one scratch object as JSON."""
        await self.put(name, json.dumps(value, separators=(",", ":")).encode())

    async def get_json(self, name: str) -> Any:  # noqa: ANN401 - parsed JSON
        """Read one scratch JSON object."""
        return json.loads(await self.get(name))

    async def get_many(self, names: Sequence[str]) -> list[bytes]:
        """Read several scratch objects, a few at a time, in the order given."""
        gate = asyncio.Semaphore(_CONCURRENT_OBJECTS)

        async def one(name: str) -> bytes:
            async with gate:
                return await self.get(name)

        return list(await asyncio.gather(*(one(name) for name in names)))


def _plan_of(payload: Mapping[str, Any]) -> HeaderPlan:
    plan = payload.get("plan")
    if not isinstance(plan, Mapping):
        raise StepError("the payload has no plan")
    return HeaderPlan(
        int(plan["headerEnd"]),
        int(plan["headerLines"]),
        plan.get("fileError"),
        plan.get("fileErrorDetail"),
        plan.get("fileErrorLine"),
    )


def _item(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    item = payload.get("item")
    if not isinstance(item, Mapping):
        raise StepError("the payload has no item")
    return item


async def plan(
    job: Job, payload: Mapping[str, Any], store: _Store, settings: ScaleOutSettings
) -> dict[str, object]:
    """Read the header, judge the whole file, and write the ranges manifest."""
    del payload
    size = _FIRST_WINDOW
    while True:
        window = await store.read(0, size)
        header = await plan_header(window, size=job.size, account=account_from_key(job.key))
        if header is not None:
            break
        size *= 2
    ranges = [] if header.file_error else cut_points(header.end, job.size, settings.range_bytes)
    await store.put_json(
        "ranges.json", [{"index": i, "start": s, "end": e} for i, (s, e) in enumerate(ranges)]
    )
    return {
        **header.to_json(),
        "ranges": len(ranges),
        "partitions": max(1, min(settings.partitions, len(ranges))),
        "scratch": job.scratch,
        "rangeBytes": settings.range_bytes,
        # The Distributed Map states read their items from these (JSON arrays).
        "manifests": {
            name: f"{job.scratch}{name}.json"
            for name in ("ranges", "slices", "partitions", "commit")
        },
    }


async def scan(
    job: Job, payload: Mapping[str, Any], store: _Store, settings: ScaleOutSettings
) -> dict[str, object]:
    """Scan one range under every parser state it may start in; write its summary."""
    del settings
    item = _item(payload)
    index, start, end = int(item["index"]), int(item["start"]), int(item["end"])
    overhang = _SCAN_OVERHANG
    while True:
        # One byte before the range (which state it starts in, a \r\n cut) and past its end.
        first = max(0, start - 1)
        window = await store.read(first, end + overhang)
        before = window[0] if index and start > first and window else None
        local = window[start - first :]

        def at(position: int, local: bytes = local) -> int | None:
            offset = position - start
            return local[offset] if 0 <= offset < len(local) else None

        begin = adjust_cut(start, before, at(start)) if index else start
        finish = max(begin, adjust_cut(end, at(end - 1), at(end)))
        found = scan_window(
            local[begin - start :],
            index=index,
            start=begin,
            end=finish,
            size=job.size,
            before=(at(begin - 1) if begin > start else before) if index else None,
        )
        if found is not None:
            await store.put_json(f"scan/{index}.json", found.to_json())
            return {"index": index}
        overhang *= 2


async def link_step(
    job: Job, payload: Mapping[str, Any], store: _Store, settings: ScaleOutSettings
) -> dict[str, object]:
    """Follow the record boundaries through every scan; write the slices manifest."""
    del settings
    header = _plan_of(payload)
    count = int(payload["plan"]["ranges"])
    scans = [
        RangeScan.from_json(json.loads(raw))
        for raw in await store.get_many([f"scan/{i}.json" for i in range(count)])
    ]
    slices = link(scans, header_end=header.end, header_lines=header.lines, size=job.size)
    await store.put_json("slices.json", [s.to_json() for s in slices])
    return {"slices": len(slices), "empty": sum(s.empty for s in slices)}


async def _header_bytes(store: _Store, header: HeaderPlan) -> bytes:
    return await store.read(0, header.end)


async def fingerprint(
    job: Job, payload: Mapping[str, Any], store: _Store, settings: ScaleOutSettings
) -> dict[str, object]:
    """Pass 1 over one slice: the (account, Id) pairs it accepts, per partition."""
    del settings
    header = _plan_of(payload)
    piece = Slice.from_json(dict(_item(payload)))
    partitions = int(payload["plan"]["partitions"])
    head = await _header_bytes(store, header)
    counts, parts = await fingerprint_slice(
        with_header(head, store.stream(piece.start, piece.end)),
        account=account_from_key(job.key),
        line_offset=piece.line_offset,
        partitions=partitions,
    )
    for partition, blob in enumerate(parts):
        await store.put(f"fp/{piece.index}/{partition}.bin", blob)
    await store.put_json(f"fp/{piece.index}/counts.json", counts.to_json())
    return {"index": piece.index, "malformed": counts.file_error is not None}


def _ledger(job: Job, settings: ScaleOutSettings, clients: Clients) -> VersionLedger:
    """The object-version ledger of the job, as the single path keeps it (ingest.versions).

    The lease is taken before the first item is written (``cut``) and must outlast the run,
    so it is :data:`WORKFLOW_LEASE_SECONDS`; the lease is the ETag's, so any step may renew or
    use it.
    """
    return VersionLedger(
        clients.dynamodb,
        objects_table=settings.objects_table,
        transactions_table=settings.transactions_table,
        version=ObjectVersion(job.bucket, job.key, job.etag, job.sequencer, job.version_id),
        policy=RetryPolicy(max_attempts=settings.max_attempts),
        lease_seconds=WORKFLOW_LEASE_SECONDS,
    )


async def cut(
    job: Job,
    payload: Mapping[str, Any],
    store: _Store,
    settings: ScaleOutSettings,
    clients: Clients,
) -> dict[str, object]:
    """Take the object's version lease; cut the file at the first slice whose CSV breaks.

    An older version than one already ingested (or being ingested) stops here, before any
    item is written (``ObjectSupersededError``, permanent).
    """
    await _ledger(job, settings, clients).acquire()
    slices = await store.get_json("slices.json")
    statuses = await store.get_many([f"fp/{i}/counts.json" for i in range(len(slices))])
    last = len(slices) - 1
    for index, raw in enumerate(statuses):
        if json.loads(raw).get("fileError") is not None:
            last = index
            break
    kept = slices[: last + 1]
    partitions = int(payload["plan"]["partitions"])
    await store.put_json("commit.json", kept)
    await store.put_json(
        "partitions.json", [{"partition": p, "slices": len(kept)} for p in range(partitions)]
    )
    return {"commitSlices": len(kept)}


async def resolve(
    job: Job, payload: Mapping[str, Any], store: _Store, settings: ScaleOutSettings
) -> dict[str, object]:
    """One partition: which accepted rows lose to the same (account, Id) in an earlier slice."""
    del job, settings
    item = _item(payload)
    partition, count = int(item["partition"]), int(item["slices"])
    blobs = await store.get_many([f"fp/{i}/{partition}.bin" for i in range(count)])
    lost = losers(enumerate(blobs))
    await store.put_json(f"losers/{partition}.json", {str(k): v for k, v in lost.items()})
    return {"partition": partition, "losers": sum(map(len, lost.values()))}


async def commit(
    job: Job,
    payload: Mapping[str, Any],
    store: _Store,
    settings: ScaleOutSettings,
    clients: Clients,
) -> dict[str, object]:
    """Pass 2 over one slice: write its items, its part of the report, its partial summary."""
    header = _plan_of(payload)
    piece = Slice.from_json(dict(_item(payload)))
    partitions = int(payload["plan"]["partitions"])
    duplicate_lines: list[int] = []
    for raw in await store.get_many([f"losers/{p}.json" for p in range(partitions)]):
        duplicate_lines += json.loads(raw).get(str(piece.index), [])
    head = await _header_bytes(store, header)
    policy = RetryPolicy(max_attempts=settings.max_attempts)
    part_key = f"{job.scratch}report/{piece.index}.csv"
    with RejectionReport(store.client, job.bucket, part_key, header=False) as part:
        stream = TransactionStream(
            with_header(head, store.stream(piece.start, piece.end)),
            account=account_from_key(job.key),
            on_reject=part.add,
            line_offset=piece.line_offset,
            duplicate_lines=duplicate_lines,
        )
        sink = DynamoDBTransactionSink(
            clients.dynamodb,
            settings.transactions_table,
            bucket=job.bucket,
            key=job.key,
            etag=job.etag,
            policy=policy,
        )
        accounts: set[str] = set()
        written = await fan_out(stream, sink, settings.num_workers, accounts)
        counts = SliceCounts.of(stream.result())
        await part.finish()
        rejected_rows = part.count
    await store.put_json(
        f"commit/{piece.index}.json",
        {
            **counts.to_json(),
            "itemsWritten": written,
            "reportRows": rejected_rows,
            "accounts": sorted(accounts),
        },
    )
    return {"index": piece.index, "itemsWritten": written}


async def reduce(
    job: Job,
    payload: Mapping[str, Any],
    store: _Store,
    settings: ScaleOutSettings,
    clients: Clients,
) -> dict[str, object]:
    """Merge the slices, store the whole report, publish the events: the single path's end."""
    started = time.perf_counter()
    header = _plan_of(payload)
    policy = RetryPolicy(max_attempts=settings.max_attempts)
    publisher = EventBridgePublisher(clients.events, settings.event_bus_name, policy=policy)
    with RejectionReport(store.client, job.bucket, report_key(job.key)) as report:
        if header.file_error is not None:
            result = ImportResult(
                0, 0, 0, (), FileErrorCode(header.file_error), header.detail, header.error_line
            )
            written, ranges, accounts = 0, 0, set[str]()
        else:
            kept = await store.get_json("commit.json")
            parts = [
                json.loads(raw)
                for raw in await store.get_many([f"commit/{s['index']}.json" for s in kept])
            ]
            result = merge_results([SliceCounts.from_json(p) for p in parts])
            written = sum(int(p["itemsWritten"]) for p in parts)
            accounts = {a for p in parts for a in p.get("accounts", [])}
            ranges = int(payload["plan"]["ranges"])
            for piece, part in zip(kept, parts, strict=True):
                if part["reportRows"]:
                    report.extend(
                        await store.get(f"report/{piece['index']}.csv"),
                        int(part["reportRows"]),
                    )
        ledger = _ledger(job, settings, clients)
        await ledger.acquire()  # ours already (cut), or first taken here for a rejected file
        outcome: IngestResult = await finish_import(
            result,
            bucket=job.bucket,
            key=job.key,
            etag=job.etag,
            items_written=written,
            accounts=accounts,
            publisher=publisher,
            summaries=S3SummaryStore(store.client, job.bucket, policy=policy),
            report=report,
            versions=ledger,
            started=started,
        )
    return {**outcome.to_json(), "path": "distributed", "ranges": ranges}


_Plain = Callable[[Job, Mapping[str, Any], _Store, ScaleOutSettings], Awaitable[dict[str, object]]]
_WithClients = Callable[
    [Job, Mapping[str, Any], _Store, ScaleOutSettings, Clients], Awaitable[dict[str, object]]
]
_PLAIN: dict[str, _Plain] = {
    "plan": plan,
    "scan": scan,
    "link": link_step,
    "fingerprint": fingerprint,
    "resolve": resolve,
}
_WITH_CLIENTS: dict[str, _WithClients] = {"cut": cut, "commit": commit, "reduce": reduce}
STEPS = (*_PLAIN, *_WITH_CLIENTS)


async def run_step(
    payload: Mapping[str, Any], *, settings: ScaleOutSettings, clients: Clients
) -> dict[str, object]:
    """Run the step ``payload["step"]`` of the job ``payload["job"]``.

    Raises:
        StepError: an unknown step or a malformed payload (a wiring bug: permanent).
        ObjectGoneError: the object version is gone (permanent).
        AwsOperationError, RetriesExhaustedError: AWS kept failing (the task is retried).
    """
    name = payload.get("step")
    job_data = payload.get("job")
    if not isinstance(job_data, Mapping):
        raise StepError("the payload has no job")
    job = Job.from_json(job_data)
    store = _Store(clients.s3, job)
    if name in _PLAIN:
        return await _PLAIN[str(name)](job, payload, store, settings)
    if name in _WITH_CLIENTS:
        return await _WITH_CLIENTS[str(name)](job, payload, store, settings, clients)
    raise StepError(f"unknown step {name!r}; expected one of {', '.join(STEPS)}")


async def run_with_session(
    payload: Mapping[str, Any],
    *,
    settings: ScaleOutSettings,
    session: Any = None,  # noqa: ANN401 - an aioboto3.Session
) -> dict[str, object]:
    """:func:`run_step` with clients built (and closed) here: the Lambda handler's call."""
    if session is None:
        import aioboto3  # noqa: PLC0415 - only needed when no session is injected

        session = aioboto3.Session()
    config = AioConfig(max_pool_connections=max(10, settings.num_workers + 2))
    async with AsyncExitStack() as stack:
        s3 = await stack.enter_async_context(session.client("s3", config=config))
        dynamodb = await stack.enter_async_context(
            session.client("dynamodb", config=config.merge(AioConfig(parameter_validation=False)))
        )
        events = await stack.enter_async_context(session.client("events", config=config))
        return await run_step(payload, settings=settings, clients=Clients(s3, dynamodb, events))
