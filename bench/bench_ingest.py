"""Ingest benchmarks: the client's CPU against a fast endpoint, and throughput against moto.

**Fast endpoint** (``--fast``; first in a default run): a small stateful stand-in for
DynamoDB, EventBridge and S3 in another process (``bench/fast_endpoint.py``) answers at once,
so only the client is measured. It keeps the tables, so ``ingest_object`` runs end to end —
the version ledger's conditional ``UpdateItem``, ``GetItem``, ``Query`` and entry writes
included — and every run is checked afterwards (every item stored, the ledger committed, one
event per account): a broken run stops the benchmark instead of printing a fast number. On
one generated file (100,000 rows by default) it reports items/s and the client's CPU-seconds
per 100,000 items (``time.process_time``, all threads) side by side for:

- the raw aiobotocore loop: pre-built 25-item ``batch_write_item`` requests, 16 coroutines,
  one client configured as ``ingest_object`` configures its own (no parameter validation);
- boto3's ``Table.batch_writer`` in 16 threads (plain Python items, its own serializer);
- this pipeline (``ingest_object``: S3 GET stream -> core -> lean BatchWriteItem -> PutEvents);
- the same pipeline forced onto the SDK path (``client.batch_write_item``), for the ratio of
  the lean path to what it replaced.

Cases are interleaved, best of ``--repeat`` (noise on a shared machine only adds CPU time).
Target: pipeline CPU <= 0.5x the raw aiobotocore loop's.

**moto** (the rest): on one generated file (50,000 rows by default) DynamoDB items/s for:

(a) the raw ceiling: pre-built ``BatchWriteItem`` requests, same concurrency, no parsing;
    every mode shares one DynamoDB client configured as ``ingest_object`` builds its own
    (connection pool sized for the workers, no botocore parameter validation);
(b) the seed's approach: one ``PutItem`` per row from ``NUM_WORKERS`` coroutines;
(c) this pipeline: ``ingest_object`` (S3 stream -> core -> queue -> workers -> events);

prints c/a and c/b, sweeps ``NUM_WORKERS`` for (a) and (c), and reports the peak RSS of a
child process ingesting a 1,000,000-row object (S3 and EventBridge on moto; DynamoDB on a
stateless local endpoint that accepts every batch, because moto would hold 1M items in RAM).

Run: ``.venv/bin/python bench/bench_ingest.py [--fast] [--fast-rows 100000] [--rows 50000]
[--rss-rows 1000000]``.
Generated data goes to ``bench/data/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import aioboto3
import boto3
from aiobotocore.config import AioConfig
from boto3.dynamodb.types import TypeDeserializer

from rss import peak_rss_kib  # bench/rss.py (the script's own folder)
from stori_pipeline.ingest import IngestResult, ingest_object, transaction_item
from stori_pipeline.ingest import dynamodb as dynamodb_sink
from stori_pipeline.records import Transaction
from stori_pipeline.settings import DEFAULT_NUM_WORKERS, IngestSettings
from stori_pipeline.stream import TransactionStream, file_chunks
from stori_pipeline.synthetic import SyntheticSpec, write_synthetic

DATA = Path(__file__).resolve().parent / "data"
BUCKET = "bench"
BUS = "bench"
# The version ledger's table (ingest/versions.py); one for every run: same object, same ETag.
OBJECTS = "bench-objects"
SWEEP = (1, 2, 4, 8, 16, 32)
Client = Any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def server(argv: Sequence[str], port: int) -> Iterator[str]:
    """Run a server process until the block ends; yield its URL once it listens."""
    process = subprocess.Popen(  # noqa: S603 - our own interpreter
        [sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(400):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"server {argv} did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()  # moto can be slow to stop while it holds many items
            process.wait()


def generate(rows: int) -> Path:
    """bench/data/ingest_<rows>.csv, 10 accounts, made once."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"ingest_{rows}.csv"
    if not path.exists():
        with path.open("w", newline="") as out:
            write_synthetic(SyntheticSpec(rows=rows, accounts=10, seed=1), out)
    return path


async def create_table(
    dynamodb: Client, name: str, keys: tuple[str, str] = ("AccountId", "TransactionKey")
) -> None:
    await dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": keys[0], "KeyType": "HASH"},
            {"AttributeName": keys[1], "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": keys[0], "AttributeType": "S"},
            {"AttributeName": keys[1], "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


async def read_all(path: Path) -> list[Transaction]:
    """Parse the file once (outside every timing) for the pre-built requests."""
    rows: list[Transaction] = []
    async for batch in TransactionStream(file_chunks(path)):
        rows += batch
    return rows


async def raw_ceiling(dynamodb: Client, table: str, requests: list[list[Any]], workers: int) -> int:
    """(a) Pre-built 25-item requests from ``workers`` coroutines."""
    queue: asyncio.Queue[list[Any]] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)

    async def worker() -> None:
        while not queue.empty():
            pending = {table: queue.get_nowait()}
            while pending:
                response = await dynamodb.batch_write_item(RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}

    async with asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(worker())
    return sum(len(r) for r in requests)


async def seed_put_item(  # noqa: PLR0913 - mirrors ingest_object's inputs
    dynamodb: Client, table: str, path: Path, *, key: str, etag: str, workers: int
) -> int:
    """(b) The seed's shape: parse, then one PutItem per row from ``workers`` coroutines."""
    queue: asyncio.Queue[Transaction | None] = asyncio.Queue(maxsize=2 * workers)
    written = 0

    async def reader() -> None:
        async for batch in TransactionStream(file_chunks(path)):
            for tx in batch:
                await queue.put(tx)
        for _ in range(workers):
            await queue.put(None)

    async def worker() -> None:
        nonlocal written
        while (tx := await queue.get()) is not None:
            item = transaction_item(tx, bucket=BUCKET, key=key, etag=etag)
            await dynamodb.put_item(TableName=table, Item=item)
            written += 1

    async with asyncio.TaskGroup() as group:
        group.create_task(reader())
        for _ in range(workers):
            group.create_task(worker())
    return written


async def timed(
    dynamodb: Client, table: str, run: Callable[[], Awaitable[int]]
) -> tuple[float, int]:
    """Items/s of ``run`` on a fresh table, which is dropped afterwards (moto keeps RAM)."""
    await create_table(dynamodb, table)
    started = time.perf_counter()
    items = await run()
    seconds = time.perf_counter() - started
    await dynamodb.delete_table(TableName=table)
    return items / seconds, items


async def throughput(
    endpoint: str, rows: int, *, only_default: bool, repeat: int
) -> dict[str, Any]:
    path = generate(rows)
    key = f"incoming/bench/{path.name}"
    session = aioboto3.Session(region_name="us-east-1")
    config = AioConfig(max_pool_connections=max(SWEEP) + 2)
    async with (
        session.client("s3", endpoint_url=endpoint, config=config) as s3,
        session.client(
            "dynamodb",
            endpoint_url=endpoint,
            config=config.merge(AioConfig(parameter_validation=False)),
        ) as dynamodb,
        session.client("events", endpoint_url=endpoint, config=config) as events,
    ):
        await s3.create_bucket(Bucket=BUCKET)
        await events.create_event_bus(Name=BUS)
        etag = (await s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes()))["ETag"]
        etag = etag.strip('"')
        transactions = await read_all(path)
        items = [
            {"PutRequest": {"Item": transaction_item(tx, bucket=BUCKET, key=key, etag=etag)}}
            for tx in transactions
        ]
        requests = [items[i : i + 25] for i in range(0, len(items), 25)]
        results: dict[str, Any] = {"rows": rows, "accepted": len(transactions), "sweep": {}}
        await create_table(dynamodb, OBJECTS, ("ObjectId", "Entry"))
        sweep = (DEFAULT_NUM_WORKERS,) if only_default else SWEEP
        for workers in sweep:
            raw = pipe = 0.0
            # Alternate the two and keep the best of each: on a shared machine the noise is
            # all downward (other processes steal CPU from moto or from us), never upward.
            for attempt in range(repeat):
                table = f"raw-{workers}-{attempt}"
                rate, _ = await timed(
                    dynamodb,
                    table,
                    functools.partial(raw_ceiling, dynamodb, table, requests, workers),
                )
                raw = max(raw, rate)
                table = f"pipe-{workers}-{attempt}"
                settings = IngestSettings(
                    transactions_table=table,
                    objects_table=OBJECTS,
                    event_bus_name=BUS,
                    idempotency_table="unused",
                    num_workers=workers,
                )

                async def pipeline(settings: IngestSettings = settings) -> int:
                    result = await ingest_object(
                        BUCKET,
                        key,
                        etag,
                        settings=settings,
                        s3=s3,
                        dynamodb=dynamodb,
                        events=events,
                    )
                    return result.items_written

                rate, written = await timed(dynamodb, table, pipeline)
                assert written == len(transactions)
                pipe = max(pipe, rate)
            results["sweep"][workers] = {"raw": raw, "pipeline": pipe}
            print(f"  workers={workers:>2}: raw {raw:8.0f}/s  pipeline {pipe:8.0f}/s", flush=True)
        default = DEFAULT_NUM_WORKERS
        table = "seed-put-item"
        seed, _ = await timed(
            dynamodb,
            table,
            functools.partial(
                seed_put_item, dynamodb, table, path, key=key, etag=etag, workers=default
            ),
        )
        results["seed_put_item"] = seed
        results["default"] = default
    return results


# --- the fast endpoint: only the client is measured --------------------------------------

FAST_WORKERS = 16
FAST_TABLE = "fast"
FAST_OBJECTS = "fast-objects"
# bench/fast_endpoint.py: the stateful stand-in for DynamoDB, EventBridge and S3.
FAST_ENDPOINT = Path(__file__).resolve().parent / "fast_endpoint.py"


def cpu_per_100k(cpu: float, items: int) -> float:
    return cpu / items * 100_000


@dataclass
class FastRun:
    """One timed case: what it wrote, its wall and CPU seconds, the pipeline's result."""

    items: int
    wall: float
    cpu: float
    result: IngestResult | None = None


async def fast_aio_case(endpoint: str, case: str, fixture: dict[str, Any]) -> FastRun:
    """One async case; clients built and warmed up outside the timing."""
    session = aioboto3.Session(region_name="us-east-1")
    config = AioConfig(max_pool_connections=FAST_WORKERS + 2)
    async with (
        session.client("s3", endpoint_url=endpoint, config=config) as s3,
        session.client(
            "dynamodb",
            endpoint_url=endpoint,
            config=config.merge(AioConfig(parameter_validation=False)),
        ) as dynamodb,
        session.client("events", endpoint_url=endpoint, config=config) as events,
    ):
        settings = IngestSettings(
            transactions_table=FAST_TABLE,
            objects_table=FAST_OBJECTS,
            event_bus_name=BUS,
            idempotency_table="unused",
            num_workers=FAST_WORKERS,
        )
        # One warm-up request each, so connection set-up and lazy imports are not timed
        # (it writes 25 of the items every case writes anyway).
        await dynamodb.batch_write_item(RequestItems={FAST_TABLE: fixture["requests"][0]})
        started, cpu = time.perf_counter(), time.process_time()
        if case == "raw":
            items = await raw_ceiling(dynamodb, FAST_TABLE, fixture["requests"], FAST_WORKERS)
            result = None
        else:
            result = await ingest_object(
                BUCKET,
                fixture["key"],
                fixture["etag"],
                settings=settings,
                s3=s3,
                dynamodb=dynamodb,
                events=events,
            )
            items = result.items_written
        cpu, wall = time.process_time() - cpu, time.perf_counter() - started
    return FastRun(items, wall, cpu, result)


def fast_boto3_case(endpoint: str, fixture: dict[str, Any]) -> FastRun:
    """boto3's batch_writer, one resource per thread (resources are not thread-safe)."""
    plain: list[dict[str, Any]] = fixture["plain"]
    chunk = -(-len(plain) // FAST_WORKERS)
    tables = [
        boto3.session.Session(region_name="us-east-1")
        .resource("dynamodb", endpoint_url=endpoint)
        .Table(FAST_TABLE)
        for _ in range(FAST_WORKERS)
    ]

    def write(table: Any, items: list[dict[str, Any]]) -> None:  # noqa: ANN401 - boto3 Table
        with table.batch_writer() as writer:
            for item in items:
                writer.put_item(Item=item)

    write(tables[0], plain[:1])  # warm-up, as for the async cases
    threads = [
        threading.Thread(target=write, args=(table, plain[i * chunk : (i + 1) * chunk]))
        for i, table in enumerate(tables)
    ]
    started, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - started
    return FastRun(len(plain), wall, cpu)


def fresh_tables(client: Client) -> None:
    """Empty transactions and objects tables on the fast endpoint, before each case."""
    for name, keys in (
        (FAST_TABLE, ("AccountId", "TransactionKey")),
        (FAST_OBJECTS, ("ObjectId", "Entry")),
    ):
        with contextlib.suppress(client.exceptions.ResourceNotFoundException):
            client.delete_table(TableName=name)
        client.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": keys[0], "KeyType": "HASH"},
                {"AttributeName": keys[1], "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key in keys],
            BillingMode="PAY_PER_REQUEST",
        )


def verify(client: Client, case: str, run: FastRun, fixture: dict[str, Any]) -> None:
    """Fail unless the case stored every item (and the pipeline finished its import).

    Read back from the endpoint, so a run that silently wrote nothing, or stopped half-way,
    cannot print a fast number.
    """
    expected = len(fixture["plain"])
    stored = client.scan(TableName=FAST_TABLE, Select="COUNT")["Count"]
    problems = []
    if run.items != expected or stored != expected:
        problems.append(f"{run.items} items reported, {stored} stored, {expected} expected")
    if run.result is not None:
        if run.result.events_published != fixture["accounts"]:
            problems.append(f"{run.result.events_published} events, {fixture['accounts']} expected")
        marker = client.get_item(
            TableName=FAST_OBJECTS,
            Key={"ObjectId": {"S": f"{BUCKET}/{fixture['key']}"}, "Entry": {"S": "version"}},
        ).get("Item", {})
        if marker.get("ETag", {}).get("S") != fixture["etag"] or "LeaseETag" in marker:
            problems.append(f"the version ledger did not commit: {marker}")
    if problems:
        raise RuntimeError(f"fast endpoint, case {case}: " + "; ".join(problems))


FAST_CASES = {
    "raw": "(a) raw aiobotocore loop, pre-built requests",
    "boto3": "(b) boto3 batch_writer, 16 threads",
    "pipeline": "(c) this pipeline (lean BatchWriteItem)",
    "pipeline-sdk": "(d) this pipeline on the SDK path",
}


def fast_bench(rows: int, repeat: int) -> dict[str, Any]:
    """Every case against the fast endpoint, interleaved, best of ``repeat``, each verified."""
    path = generate(rows)
    key = f"incoming/bench/{path.name}"
    data = path.read_bytes()
    etag = hashlib.md5(data).hexdigest()  # noqa: S324 - S3's ETag is an MD5
    transactions = asyncio.run(read_all(path))
    typed = [transaction_item(tx, bucket=BUCKET, key=key, etag=etag) for tx in transactions]
    requests = [
        [{"PutRequest": {"Item": item}} for item in typed[i : i + 25]]
        for i in range(0, len(typed), 25)
    ]
    deserializer = TypeDeserializer()
    plain = [{k: deserializer.deserialize(v) for k, v in item.items()} for item in typed]
    accounts = len({tx.account_id for tx in transactions})
    fixture = {
        "key": key,
        "etag": etag,
        "requests": requests,
        "plain": plain,
        "accounts": accounts,
    }
    best: dict[str, tuple[float, float]] = {}
    port = free_port()
    argv = [str(FAST_ENDPOINT), str(port), str(path), BUCKET, key]
    with server(argv, port) as endpoint:
        client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
        for _ in range(repeat):
            for case in FAST_CASES:
                fresh_tables(client)
                if case == "boto3":
                    run = fast_boto3_case(endpoint, fixture)
                else:
                    # The SDK path: the sink finds no lean client for the aiobotocore client.
                    sdk = mock.patch.object(dynamodb_sink, "lean_client_for", return_value=None)
                    with sdk if case == "pipeline-sdk" else contextlib.nullcontext():
                        run = asyncio.run(fast_aio_case(endpoint, case, fixture))
                verify(client, case, run, fixture)
                rate, cpu = run.items / run.wall, cpu_per_100k(run.cpu, run.items)
                old_rate, old_cpu = best.get(case, (0.0, float("inf")))
                best[case] = (max(rate, old_rate), min(cpu, old_cpu))
        client.close()
    raw_cpu = best["raw"][1]
    print(f"fast endpoint, {len(transactions):,} items, {accounts} accounts, best of {repeat}:")
    print(f"  {'case':<48} {'items/s':>9} {'CPU-s/100k':>11} {'x raw':>6}")
    for case, label in FAST_CASES.items():
        rate, cpu = best[case]
        print(f"  {label:<48} {rate:9.0f} {cpu:11.2f} {cpu / raw_cpu:6.2f}")
    ratio = best["pipeline"][1] / raw_cpu
    print(f"  pipeline CPU / raw aiobotocore CPU = {ratio:.2f} (target <= 0.5)")
    print("  every run verified: all items stored, the ledger committed, events sent", flush=True)
    return {"items": len(transactions), "cases": best, "ratio": ratio}


# --- the stateless DynamoDB endpoint and the RSS child --------------------------------------


def null_dynamodb(port: int) -> None:
    """Answer every DynamoDB call with success (BatchWriteItem: nothing unprocessed)."""
    from aiohttp import web  # noqa: PLC0415 - only this child process needs it

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            body=b'{"UnprocessedItems":{}}', content_type="application/x-amz-json-1.0"
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("POST", "/", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


async def rss_child(moto: str, dynamo: str, key: str, etag: str, workers: int) -> None:
    session = aioboto3.Session(region_name="us-east-1")
    config = AioConfig(max_pool_connections=workers + 2)
    settings = IngestSettings(
        transactions_table="null",
        objects_table="null",
        event_bus_name=BUS,
        idempotency_table="unused",
        num_workers=workers,
    )
    async with (
        session.client("s3", endpoint_url=moto, config=config) as s3,
        session.client(
            "dynamodb",
            endpoint_url=dynamo,
            config=config.merge(AioConfig(parameter_validation=False)),
        ) as dynamodb,
        session.client("events", endpoint_url=moto, config=config) as events,
    ):
        baseline = peak_rss_kib()
        result = await ingest_object(
            BUCKET, key, etag, settings=settings, s3=s3, dynamodb=dynamodb, events=events
        )
    peak = peak_rss_kib()
    print(
        json.dumps(
            {
                "baselineMiB": baseline / 1024,
                "peakMiB": peak / 1024,
                "items": result.items_written,
                "seconds": result.duration,
            }
        )
    )


async def upload(endpoint: str, path: Path, key: str) -> str:
    session = aioboto3.Session(region_name="us-east-1")
    async with session.client("s3", endpoint_url=endpoint) as s3:
        await s3.create_bucket(Bucket=BUCKET)
        with path.open("rb") as body:
            response = await s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return str(response["ETag"]).strip('"')


def peak_rss(moto: str, rows: int, workers: int) -> dict[str, Any]:
    path = generate(rows)
    key = f"incoming/bench/{path.name}"
    etag = asyncio.run(upload(moto, path, key))
    port = free_port()
    with server([__file__, "--null-dynamodb", str(port)], port) as dynamo:
        child = subprocess.run(  # noqa: S603 - our own interpreter and script
            [sys.executable, __file__, "--rss-child", moto, dynamo, key, etag, str(workers)],
            capture_output=True,
            text=True,
            check=True,
        )
    report: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    report["rows"] = rows
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rss-rows", type=int, default=1_000_000)
    parser.add_argument("--no-sweep", action="store_true", help="only the default NUM_WORKERS")
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs per setting")
    parser.add_argument("--fast", action="store_true", help="only the fast-endpoint mode")
    parser.add_argument("--fast-rows", type=int, default=100_000)
    parser.add_argument("--fast-repeat", type=int, default=3, help="best of N per case")
    parser.add_argument("--null-dynamodb", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rss-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.null_dynamodb:
        null_dynamodb(args.null_dynamodb)
        return
    if args.rss_child:
        moto, dynamo, key, etag, workers = args.rss_child
        asyncio.run(rss_child(moto, dynamo, key, etag, int(workers)))
        return
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    fast_bench(args.fast_rows, args.fast_repeat)
    if args.fast:
        return
    port = free_port()
    with server(["-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port) as moto:
        print(f"moto server {moto}; {args.rows:,} rows")
        results = asyncio.run(
            throughput(moto, args.rows, only_default=args.no_sweep, repeat=args.repeat)
        )
        best = max(results["sweep"], key=lambda w: results["sweep"][w]["pipeline"])
        default = results["sweep"][results["default"]]
        a, c, b = default["raw"], default["pipeline"], results["seed_put_item"]
        print(f"\nNUM_WORKERS={results['default']} on {results['accepted']:,} items:")
        print(f"  (a) raw BatchWriteItem ceiling  {a:8.0f} items/s")
        print(f"  (b) seed: PutItem per row       {b:8.0f} items/s")
        print(f"  (c) this pipeline               {c:8.0f} items/s")
        print(f"  c/a = {c / a:.2f}   c/b = {c / b:.1f}")
        print(f"  best NUM_WORKERS for (c): {best}")
        print(json.dumps(results, default=str))
        if args.rss_rows:
            rss = peak_rss(moto, args.rss_rows, results["default"])
            print(
                f"\npeak RSS ingesting {rss['rows']:,} rows: {rss['peakMiB']:.0f} MiB "
                f"(after imports/clients {rss['baselineMiB']:.0f} MiB; "
                f"{rss['items'] / rss['seconds']:.0f} items/s to a stateless endpoint)"
            )


if __name__ == "__main__":
    main()
