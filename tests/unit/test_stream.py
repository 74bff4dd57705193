"""TransactionStream: accepted rows in batches, live progress, and the same answer as the oracle."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stori_pipeline import Rejection, Transaction, TransactionStream, summarize_stream
from tests.unit._support import CHUNK_SIZES, chunked, comparable, oracle_with_rows
from tests.unit.test_properties import GeneratedFile, csv_files


def stream_all(
    data: bytes, *, account: str | None, batch_size: int, chunk_size: int
) -> tuple[list[list[Transaction]], dict[str, object]]:
    """All batches a collecting stream yields, and its result as the CLI's JSON."""
    rejected: list[Rejection] = []

    async def run() -> tuple[list[list[Transaction]], dict[str, object]]:
        stream = TransactionStream(
            chunked(data, chunk_size),
            account=account,
            on_reject=rejected.append,
            batch_size=batch_size,
        )
        batches = [batch async for batch in stream]
        return batches, stream.result().to_json(rejected)

    return asyncio.run(run())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    file=st.booleans().flatmap(lambda trailing: csv_files(trailing_newline=trailing)),
    batch_size=st.sampled_from([1, 2, 3, 500]),
    chunk_size=st.sampled_from(CHUNK_SIZES),
)
def test_collecting_stream_agrees_with_oracle(
    file: GeneratedFile, batch_size: int, chunk_size: int
) -> None:
    """Batches hold exactly the accepted rows, in order, with their values; result as oracle."""
    expected, rows = oracle_with_rows(file.data, file.account)
    batches, result = stream_all(
        file.data, account=file.account, batch_size=batch_size, chunk_size=chunk_size
    )
    assert comparable(result) == comparable(expected)
    assert all(0 < len(batch) <= batch_size for batch in batches)
    assert all(len(batch) == batch_size for batch in batches[:-1])
    got = [
        (t.account_id, t.transaction_id, t.date, t.year, t.month, t.amount_cents, t.line)
        for batch in batches
        for t in batch
    ]
    assert got == rows


def test_transaction_values() -> None:
    """A Transaction carries account, trimmed id and date, year/month, cents, kind and line."""
    data = (
        b"TransactionId,Date,Amount,AccountId\n"
        b" t1 , 7/15/2024 ,+60.5,Acc1\n\n"
        b"t2,2024-08-02,-0.01,Acc2\nt3,8/2,-0,Acc1\n"
    )
    (batch,), _ = stream_all(data, account=None, batch_size=500, chunk_size=3)
    assert batch == [
        Transaction("Acc1", "t1", "7/15/2024", 2024, 7, 6050, 2),
        Transaction("Acc2", "t2", "2024-08-02", 2024, 8, -1, 4),
        Transaction("Acc1", "t3", "8/2", None, 8, 0, 5),
    ]
    assert [t.kind for t in batch] == ["credit", "debit", "zero"]
    assert [t.amount for t in batch] == [Decimal("60.50"), Decimal("-0.01"), Decimal("0.00")]
    assert str(batch[0].amount) == "60.50"


def test_file_error_yields_no_batch() -> None:
    """A file-level rejection ends iteration with no batch and sets file_error (no raise)."""
    batches, result = stream_all(
        b"Id,Date\n1,7/15\n", account="A", batch_size=500, chunk_size=1 << 30
    )
    assert batches == []
    assert result["fileError"] == "bad_header"


async def test_rows_read_is_live_progress() -> None:
    """rows_read grows while the stream is read, and ends at the number of data records."""
    data = b"Id,Date,Transaction\n" + b"".join(b"%d,7/15,1\n" % i for i in range(1200))
    stream = TransactionStream(chunked(data, 4096), account="A", batch_size=100)
    seen = [stream.rows_read async for _batch in stream]
    assert seen == sorted(seen)
    assert seen[0] < 1200
    assert stream.rows_read == 1200
    assert stream.result().rows_read == 1200


async def test_result_before_reading_is_an_error() -> None:
    """result() before the stream was read is refused, not a wrong empty answer."""
    stream = TransactionStream(chunked(b"Id,Date,Transaction\n1,7/15,1\n", 8), account="A")
    with pytest.raises(RuntimeError):
        stream.result()


def test_import_result_repr_counts_instead_of_listing_summaries() -> None:
    """The repr stays short however many accounts (asyncio.run formats it on return)."""
    body = "".join(f"{i},7/15,1.00,A{i}\n" for i in range(2000))
    data = ("TransactionId,Date,Amount,AccountId\n" + body).encode()

    async def run() -> str:
        return repr(await summarize_stream(chunked(data, 1 << 30)))

    text = asyncio.run(run())
    assert text == (
        "ImportResult(rows_read=2000, rows_accepted=2000, rows_rejected=0, accounts=<2000>)"
    )


@pytest.mark.parametrize(
    "data",
    [b"Nope,Header\n1,2\n", b"Id,Date,Amount\n" + b"1,7/15,1\n" * 2000],
    ids=["rejected-header", "caller-stops-early"],
)
def test_the_byte_source_is_closed_when_reading_ends(data: bytes) -> None:
    """However reading ends, the chunk iterator is closed then, not left to GC or loop exit."""
    closed: list[bool] = []

    async def chunks() -> AsyncIterator[bytes]:
        try:
            for start in range(0, len(data), 64):
                yield data[start : start + 64]
        finally:
            closed.append(True)

    async def run() -> None:
        async with contextlib.aclosing(TransactionStream(chunks(), account="A").__aiter__()) as it:
            async for _batch in it:
                break  # the caller stops after the first batch
        assert closed == [True]  # before the event loop's own clean-up at exit

    asyncio.run(run())
