"""The distributed path's per-range costs, and what they project for a 100M-row file on AWS.

Usage: python bench/bench_scaleout.py [--rows 1000000] [--accounts 20] [--write-cpu 6.0]
                                      [--repeat 3] [--rss]

Measured here, per range, in CPU-seconds per 100k rows (best of ``--repeat``):

* **scan**: :func:`scan_window` over the whole range (both parser hypotheses, the csv module);
* **fingerprint**: pass 1, the single path's reader plus a 128-bit fingerprint per accepted row;
* **commit read**: pass 2's reading and validation, without the writes;
* **resolve**: one partition's losers over every range's fingerprints.

The writes are the ingest's own cost (``--write-cpu``, CPU-s per 100k items, from
``make bench-ingest``'s fast-endpoint mode); the table's write quota bounds them as well
(40,000 write units/s for an on-demand table unless raised). ``--rss`` measures one range's
peak memory in a fresh process, for two file sizes: it must not grow with the file.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import subprocess
import sys
import time

from stori_pipeline.scaleout.ranges import (
    chunks_of,
    fingerprint_slice,
    losers,
    plan_header,
    with_header,
)
from stori_pipeline.scaleout.split import scan_window
from stori_pipeline.stream import TransactionStream
from stori_pipeline.synthetic import SyntheticSpec, write_synthetic

TABLE_WRITES_PER_SECOND = 40_000  # on-demand default per-table quota (write units/s)
LAMBDA_TIMEOUT_SECONDS = 900
# Per step and per item, on AWS (not measurable here): Lambda invoke + cold start amortised,
# and a Distributed Map child's start. Stated, not measured; the local ones are in the note.
TASK_OVERHEAD_SECONDS = 0.5
# The state machine's MaxConcurrency (statemachine/ingest.asl.json).
READ_CONCURRENCY = 100
COMMIT_CONCURRENCY = 8
ROW_BYTES = 30  # the Go format's average row


def generate(rows: int, accounts: int) -> bytes:
    """A deterministic file of ``rows`` rows over ``accounts`` accounts, 1% bad rows."""
    out = io.StringIO(newline="")
    write_synthetic(SyntheticSpec(rows=rows, accounts=accounts, seed=7, error_rate=0.01), out)
    return out.getvalue().encode()


def cpu(run: object) -> float:
    """CPU seconds of one call."""
    start = time.process_time()
    run()  # type: ignore[operator]
    return time.process_time() - start


def best(repeat: int, run: object) -> float:
    """The least CPU time of ``repeat`` calls (the least noisy on a shared machine)."""
    return min(cpu(run) for _ in range(repeat))


def measure(data: bytes, repeat: int) -> dict[str, float]:
    """CPU-seconds per 100k rows of each per-range step over ``data`` as one range."""
    plan = asyncio.run(plan_header(data[: 1 << 20], size=len(data), account=None))
    assert plan is not None
    assert plan.file_error is None
    header, body = data[: plan.end], data[plan.end :]
    rows = body.count(b"\n")

    def scan() -> None:
        scan_window(body, index=1, start=plan.end, end=len(data), size=len(data), before=0x0A)

    def fingerprint() -> None:
        asyncio.run(
            fingerprint_slice(
                with_header(header, chunks_of(body)), account=None, line_offset=0, partitions=16
            )
        )

    def commit_read() -> None:
        async def run() -> None:
            stream = TransactionStream(with_header(header, chunks_of(body)), account=None)
            async for _batch in stream:
                pass

        asyncio.run(run())

    _counts, parts = asyncio.run(
        fingerprint_slice(
            with_header(header, chunks_of(body)), account=None, line_offset=0, partitions=1
        )
    )

    def resolve() -> None:
        losers([(0, parts[0])])

    per = 100_000 / rows
    return {
        "scan": best(repeat, scan) * per,
        "fingerprint": best(repeat, fingerprint) * per,
        "commit read": best(repeat, commit_read) * per,
        "resolve": best(repeat, resolve) * per,
    }


def project(costs: dict[str, float], write_cpu: float, total_rows: int) -> list[str]:
    """Wall time of a ``total_rows`` file at 10, 50 and 200 ranges (the workflow's shape).

    The passes run one after another; within a pass, ranges run in parallel up to the Map's
    ``MaxConcurrency`` (read passes :data:`READ_CONCURRENCY`, commit
    :data:`COMMIT_CONCURRENCY`). The commit's writes share the table's quota.
    """
    read_row = (costs["scan"] + costs["fingerprint"]) / 100_000
    write_row = (costs["commit read"] + write_cpu) / 100_000
    one_range_rate = 1 / write_row  # items/s one commit task writes when nothing throttles it
    lines = [
        "| ranges | rows per range | read passes | commit | one commit task | total | bound by |",
        "|---|---|---|---|---|---|---|",
    ]
    for ranges in (10, 50, 200):
        rows = total_rows // ranges
        waves = -(-ranges // READ_CONCURRENCY)
        reading = waves * rows * read_row
        writers = min(ranges, COMMIT_CONCURRENCY)
        rate = min(TABLE_WRITES_PER_SECOND, writers * one_range_rate)
        commit = total_rows / rate
        per_task = rows / (rate / writers)
        total = reading + commit + 12 * TASK_OVERHEAD_SECONDS
        bound = "table" if rate == TABLE_WRITES_PER_SECOND else "our CPU"
        warn = " (over Lambda's 900 s)" if per_task > LAMBDA_TIMEOUT_SECONDS else ""
        lines.append(
            f"| {ranges} | {rows:,} | {reading:,.0f} s | {commit:,.0f} s | {per_task:,.0f} s"
            f"{warn} | {total / 60:,.1f} min | {bound} |"
        )
    saturating = TABLE_WRITES_PER_SECOND / one_range_rate
    lines.append(
        f"\nOne commit task writes {one_range_rate:,.0f} items/s; {saturating:.1f} of them "
        f"saturate the table's {TABLE_WRITES_PER_SECOND:,} writes/s, so from "
        f"{max(1, round(saturating + 0.5))} ranges on the table, not our code, is the bound."
    )
    return lines


def range_rss(range_mib: int) -> int:
    """Peak RSS (KiB) of one fresh process running every per-range step over one range.

    A task reads only its range (and the header), so this is what one task needs whatever
    the size of the file; it grows with ``RangeBytes``, which the template bounds.
    """
    rows = range_mib * 1024 * 1024 // ROW_BYTES + 1000
    code = (
        "import sys; sys.path.insert(0, 'bench');"
        "from bench_scaleout import generate, measure; from rss import peak_rss_kib;"
        f"data = generate({rows}, 20)[: {range_mib} * 1024 * 1024];"
        "cut = data.rfind(b'\\n') + 1; base = peak_rss_kib(); measure(data[:cut], 1);"
        "print(base, peak_rss_kib())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603 - our own code
    base, peak = map(int, done.stdout.split())
    return peak - base


def main() -> None:
    """Measure, print the per-step table and the projection."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--write-cpu",
        type=float,
        default=6.0,
        help="the ingest's CPU-s per 100k items (make bench-ingest, fast endpoint)",
    )
    parser.add_argument("--total-rows", type=int, default=100_000_000)
    parser.add_argument("--rss", action="store_true", help="one task's peak RSS, two range sizes")
    args = parser.parse_args()
    data = generate(args.rows, args.accounts)
    print(f"{args.rows:,} rows, {args.accounts} accounts, {len(data) / 1e6:.1f} MB, one range")
    costs = measure(data, args.repeat)
    print("\n| step (per range) | CPU-s per 100k rows |\n|---|---|")
    for name, value in costs.items():
        print(f"| {name} | {value:.2f} |")
    print(f"| writes (--write-cpu) | {args.write_cpu:.2f} |")
    print(f"\nProjection for {args.total_rows:,} rows ({args.accounts} accounts) on AWS:\n")
    print("\n".join(project(costs, args.write_cpu, args.total_rows)))
    if args.rss:
        for mib in (16, 64):
            extra = range_rss(mib) / 1024
            print(f"one task over a {mib} MiB range: +{extra:.0f} MiB over the file in memory")


if __name__ == "__main__":
    main()
