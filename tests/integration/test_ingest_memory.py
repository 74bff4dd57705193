"""Memory stays flat: ingesting 100k rows peaks no higher than 20k rows, plus the id set.

moto keeps every stored item in memory, so this test runs its own moto server in a separate
process, and each ingest runs in a fresh child process whose peak RSS (``VmHWM``) is
measured: nothing else in that process can inflate it. (``tracemalloc`` would be exact but
slows the client ~10x.)
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.ingest_stack import IngestStack

pytestmark = pytest.mark.slow
MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def external_moto() -> Iterator[str]:
    """A moto server in its own process; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):  # bounded wait for the emulator to listen
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("moto server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def flat_file(rows: int) -> bytes:
    """One account, unique ids, and only 97 distinct amounts and 28 dates.

    Repeating values keep the validator's bounded text caches the same size for every file
    length, so the duplicate-id set is the only state that may grow with the row count.
    """
    body = "".join(f"{n},7/{n % 28 + 1},-{n % 97 + 1}.25\n" for n in range(rows))
    return ("Id,Date,Transaction\n" + body).encode()


def id_set_bytes(rows: int) -> int:
    """What a set of the ids ``0..rows-1`` costs (the test's own measurement)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    ids = {str(n) for n in range(rows)}
    size = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del ids
    return size


def peak_rss_while_ingesting(endpoint: str, suffix: str, rows: int) -> int:
    """Peak RSS in bytes of a fresh process that ingests one ``rows``-row object."""
    stack = IngestStack(endpoint, suffix).create()
    key = f"incoming/A1/{rows}.csv"
    stack.upload(key, flat_file(rows))
    etag = stack.client("s3").head_object(Bucket=stack.bucket, Key=key)["ETag"].strip('"')
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.ingest_rss",
            endpoint,
            stack.bucket,
            key,
            etag,
            stack.table,
            stack.objects_table,
            stack.bus,
            "8",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=600,
    )
    report = json.loads(child.stdout)
    assert report["itemsWritten"] == rows
    return int(report["maxrssKiB"]) * 1024


def test_peak_memory_does_not_grow_with_rows_beyond_the_id_set(
    external_moto: str, unique: str
) -> None:
    """5x the rows costs at most the larger id set plus 8 MiB: rows are never held."""
    small = peak_rss_while_ingesting(external_moto, f"{unique}s", 20_000)
    large = peak_rss_while_ingesting(external_moto, f"{unique}l", 100_000)
    # The slack covers allocator fragmentation (the ids are interleaved with freed per-row
    # objects, so RSS grows a little faster than the live bytes); holding the accepted rows
    # alone would add ~14 MiB more, holding the items far more.
    allowed = id_set_bytes(100_000) - id_set_bytes(20_000) + 8 * MIB
    print(  # noqa: T201 - shown with -s, for the record
        f"peak RSS 20k={small / MIB:.1f} MiB, 100k={large / MIB:.1f} MiB, "
        f"growth allowed {allowed / MIB:.1f} MiB"
    )
    assert large - small < allowed
