"""A ledger of many buckets (flat): its rows folded in numpy give exactly what Ledger.add gives.

``Ledger.MANY_BUCKETS`` and ``bucket_table.FOLD_ROWS`` are lowered here so that small inputs
turn the ledger flat and fold its table several times; the reference is the same rows through
``Ledger.add`` (Python ints, one row at a time) and, for files, the independent oracle.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from stori_pipeline import Ledger, bucket_table
from stori_pipeline.stream import file_chunks, summarize_stream
from stori_pipeline.synthetic import SyntheticSpec, write_synthetic
from tests.conftest import REPO
from tests.unit._support import comparable, oracle

Row = tuple[str, int | None, int, int]


@pytest.fixture
def flat_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ledgers turn flat past 8 buckets, and their tables fold every 16 rows."""
    monkeypatch.setattr(Ledger, "MANY_BUCKETS", 8)
    monkeypatch.setattr(bucket_table, "FOLD_ROWS", 16)


def _rows(count: int, seed: int, cents: int = 100_000) -> list[Row]:
    rng = random.Random(seed)
    return [
        (
            f"Acc{rng.randrange(40)}",
            rng.choice((None, 2023, 2024)),
            rng.randint(1, 12),
            rng.choice((0, rng.randint(-cents, cents))),
        )
        for _ in range(count)
    ]


def _by_add(rows: list[Row]) -> Ledger:
    ledger = Ledger()
    for row in rows:
        ledger.add(*row)
    return ledger


def _by_batches(rows: list[Row], ledger: Ledger, size: int = 25) -> Ledger:
    """The rows in batches, as the column path hands them over: lists, then keys once flat."""
    for start in range(0, len(rows), size):
        batch = rows[start : start + size]
        keys = [
            ledger.account_key(account) | ((year or 0) * 16 + month)
            for account, year, month, _ in batch
        ]
        targets = keys if ledger.flat else [ledger.pending(key) for key in keys]
        ledger.append_all(targets, [cents for *_, cents in batch])
    return ledger


def _texts(ledger: Ledger, *, compact: bool) -> list[str]:
    return list(ledger.summaries().json_texts(compact=compact))


def _assert_same(flat: Ledger, reference: Ledger) -> None:
    assert tuple(flat.summaries()) == tuple(reference.summaries())
    for compact in (False, True):
        separators = (",", ":") if compact else (", ", ": ")
        expected = [
            json.dumps(s.to_json(), separators=separators, ensure_ascii=False)
            for s in reference.summaries()
        ]
        assert _texts(flat, compact=compact) == expected


@pytest.mark.usefixtures("flat_soon")
def test_a_flat_ledger_sums_like_add() -> None:
    """Pending lists, then the switch, then many folds: the summaries and texts of add()."""
    rows = _rows(2_000, seed=1)
    ledger = _by_batches(rows, Ledger())
    assert ledger.flat
    _assert_same(ledger, _by_add(rows))


@pytest.mark.usefixtures("flat_soon")
def test_rows_added_one_by_one_to_a_flat_ledger_join_its_table() -> None:
    """add() (the row-at-a-time path) on a flat ledger: its buckets and the table merge."""
    rows = _rows(600, seed=2)
    ledger = _by_batches(rows[:400], Ledger())
    assert ledger.flat
    for row in rows[400:]:
        ledger.add(*row)
    _assert_same(ledger, _by_add(rows))


@pytest.mark.usefixtures("flat_soon")
def test_sums_past_64_bits_go_back_to_python_ints() -> None:
    """Amounts of 15 integer digits: the table stops before 2**61 cents; the sums stay exact."""
    rows = _rows(3_000, seed=3, cents=10**17 - 1)
    assert sum(abs(cents) for *_, cents in rows) > 2**63  # a 64-bit sum would have wrapped
    ledger = _by_batches(rows, Ledger())
    assert not ledger.flat  # left the table for good
    _assert_same(ledger, _by_add(rows))


@pytest.mark.usefixtures("flat_soon")
def test_a_flat_table_with_huge_rows_added_one_by_one_is_summed_in_python() -> None:
    """Rows add()ed to a flat ledger whose sums would pass the limit: the exact path."""
    rows = _rows(300, seed=4)
    huge = _rows(200, seed=5, cents=10**17 - 1)
    ledger = _by_batches(rows, Ledger())
    assert ledger.flat
    for row in huge:
        ledger.add(*row)
    _assert_same(ledger, _by_add(rows + huge))


@pytest.mark.usefixtures("flat_soon")
@pytest.mark.parametrize(
    "spec",
    [
        SyntheticSpec(rows=3_000, accounts=300, seed=6, error_rate=0.05),
        SyntheticSpec(rows=3_000, accounts=500, seed=7, year=2024, error_rate=0.02),
    ],
    ids=["no-year", "year"],
)
def test_a_file_read_flat_agrees_with_the_oracle(tmp_path: Path, spec: SyntheticSpec) -> None:
    """Through the validator: bad dates and accounts (negative keys), duplicates, the oracle."""
    path = tmp_path / "tx.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        write_synthetic(spec, out)
    result = asyncio.run(summarize_stream(file_chunks(path, chunk_size=4096)))
    expected = comparable(oracle(path.read_bytes()))
    assert comparable(result.to_json()) == {**expected, "rejected": []}  # not collected here
    assert result.rows_rejected > 0


def test_a_file_of_few_accounts_never_loads_numpy(tmp_path: Path) -> None:
    """Numpy is for many buckets: a file of a few accounts is summed without it."""
    path = tmp_path / "tx.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        write_synthetic(SyntheticSpec(rows=5_000, accounts=20, seed=8), out)
    code = (
        "import sys\n"
        "from stori_pipeline.cli import main\n"
        f"assert main(['summarize', {str(path)!r}, '--json']) == 0\n"
        "print('numpy' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        check=True,
    )
    assert done.stderr.strip().splitlines()[-1] == "False"


@pytest.mark.usefixtures("flat_soon")
def test_a_flat_ledger_without_rows_has_no_summaries() -> None:
    """Lists made for rows that were then all rejected: flat, and no account to show."""
    ledger = Ledger()
    for month in range(1, 11):
        ledger.pending(ledger.account_key("A") | month)
    ledger.append_all([], [])
    assert ledger.flat
    assert tuple(ledger.summaries()) == ()
    assert _texts(ledger, compact=False) == []
