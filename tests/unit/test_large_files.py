"""The oracle on large files: across batch boundaries (500 records) and after caches fill."""

from __future__ import annotations

import calendar
import io

import pytest

from stori_pipeline.synthetic import HeaderStyle, SyntheticSpec, write_synthetic
from tests.unit._support import comparable, oracle, summarize_bytes


def synthetic(spec: SyntheticSpec) -> bytes:
    """A generated file's bytes."""
    buffer = io.StringIO()
    write_synthetic(spec, buffer)
    return buffer.getvalue().encode()


@pytest.mark.parametrize(
    "spec",
    [
        SyntheticSpec(rows=6000, accounts=5, seed=7, style=HeaderStyle.GO, error_rate=0.1),
        SyntheticSpec(rows=6000, accounts=1, seed=8, style=HeaderStyle.CHALLENGE, error_rate=0.2),
        SyntheticSpec(
            rows=5003, accounts=3, seed=9, style=HeaderStyle.GO, error_rate=0.05, year=2024
        ),
    ],
    ids=["go", "challenge", "go-with-year"],
)
@pytest.mark.parametrize("chunk_size", [1, 4093, 1 << 30])
def test_oracle_agrees_on_synthetic_files(spec: SyntheticSpec, chunk_size: int) -> None:
    """Thousands of generated rows with errors: same JSON as the reference reading."""
    data = synthetic(spec)
    account = None if spec.style is HeaderStyle.GO else "AccountId123"
    expected = oracle(data, account)
    assert expected["rowsRejected"] > 0
    actual = summarize_bytes(data, account=account, chunk_size=chunk_size)
    assert comparable(actual) == comparable(expected)


def many_distinct_values_file(rows: int) -> bytes:
    """Rows whose dates, amounts and accounts are (mostly) all different raw strings.

    Every valid M/D/YYYY date of 1900-2100 appears once, in several spellings, with invalid
    Feb 29ths of common years mixed in; amounts and accounts are distinct per row, with some
    invalid ones; the last rows reuse early accounts and ids so duplicates must be found long
    after those values left any bounded cache.
    """
    dates: list[str] = []
    for year in range(1900, 2101):
        dates.extend(
            f"{month}/{day}/{year}"
            for month in range(1, 13)
            for day in range(1, calendar.monthrange(year, month)[1] + 1)
        )
        if not calendar.isleap(year):
            dates.append(f"2/29/{year}")  # invalid
    lines = ["TransactionId,Date,Amount,AccountId"]
    reuse_from = rows - 5000
    for i in range(rows):
        date = dates[i % len(dates)]
        if i % 7 == 3:
            date = f" {date}\t"
        elif i % 11 == 5:
            m, d, y = date.split("/")
            date = f"{y}-{int(m):02d}-{int(d):02d}"
        sign = "-" if i % 3 else "+"
        amount = f"{sign}{i}.{i % 100:02d}" if i % 13 else f"{i}.{i % 1000:03d}"
        account = f"A{i}" if i < reuse_from else f"A{i - reuse_from}"
        if i % 17 == 4:
            account = f"A{i}!"
        tx_id = str(i) if i < reuse_from or i % 2 else str(i - reuse_from)
        lines.append(f"{tx_id},{date},{amount},{account}")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.slow
def test_oracle_agrees_after_caches_fill() -> None:
    """More than 70,000 distinct dates, amounts and accounts: no cache changes an answer."""
    data = many_distinct_values_file(80_000)
    expected = oracle(data)
    codes = {r["code"] for r in expected["rejected"]}
    assert {"invalid_date", "invalid_amount", "invalid_account", "duplicate_id"} <= codes
    actual = summarize_bytes(data, chunk_size=1 << 16)
    assert comparable(actual) == comparable(expected)


@pytest.mark.slow
def test_repeated_values_across_many_batches() -> None:
    """The same few raw values over 30,000 rows (cache hits): same answer as the oracle."""
    values = [("7/15", "+1.50"), (" 7/15", "-2"), ("13/1", "1"), ("2/29", "1.234"), ("8/2", " 3 ")]
    lines = ["Id,Date,Transaction"]
    for i in range(30_000):
        date, amount = values[i % len(values)]
        lines.append(f"{i % 20_000},{date},{amount}")
    data = ("\r\n".join(lines) + "\r\n").encode()
    expected = oracle(data, "Acc1")
    actual = summarize_bytes(data, account="Acc1", chunk_size=8191)
    assert comparable(actual) == comparable(expected)


@pytest.mark.parametrize("terminator", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("unterminated", [False, True])
def test_line_numbers_across_many_batches(terminator: str, unterminated: bool) -> None:
    """Multi-line quoted fields and blank lines spread over many batches: exact line numbers.

    Most batches hold only one-line records (line numbers come from the parser's count);
    some hold records spanning lines, blank lines, or both, and rejected rows in every batch
    report the line they end on, as the csv module counts it.
    """
    memos = ["", "one", '"two\nlines"', '"cr\ronly"', '"crlf\r\nend"', '"ends\r"']
    lines = ["Id,Date,Amount,Memo"]
    for i in range(4000):
        memo = memos[i % len(memos)] if i % 450 < 30 else ""
        tx_id = i - 1 if i % 97 == 0 and i else i  # a duplicate now and then
        lines.append(f"{tx_id},{i % 12 + 1}/1,{i}.25,{memo}")
        if i % 700 == 3:
            lines.append("")  # a blank line
    text = terminator.join(lines) + ("" if unterminated else terminator)
    data = text.encode()
    expected = oracle(data, "Acc1")
    assert len(expected["rejected"]) > 30
    for chunk_size in (4093, 1 << 30):
        actual = summarize_bytes(data, account="Acc1", chunk_size=chunk_size)
        assert comparable(actual) == comparable(expected)
