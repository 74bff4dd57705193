"""Realistic synthetic transaction files for tests and benchmarks (``stori-pipeline generate``)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TextIO

__all__ = ["HeaderStyle", "SyntheticSpec", "write_synthetic"]

_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class HeaderStyle(StrEnum):
    """The header style of a generated file.

    ``challenge``: ``Id,Date,Transaction`` (one account, signed ``+``/``-``);
    ``go``: ``TransactionId,Date,Amount,AccountId`` (the original Go system's format).
    """

    CHALLENGE = "challenge"
    GO = "go"


@dataclass(frozen=True, slots=True)
class SyntheticSpec:
    """What to generate. ``error_rate`` is the share of rows made invalid on purpose."""

    rows: int
    accounts: int = 1
    seed: int = 0
    style: HeaderStyle = HeaderStyle.GO
    error_rate: float = 0.0
    year: int | None = None


# Each maker turns a valid row (id, date, amount, account) into one with a known defect.
def _bad_rows(rng: random.Random) -> list[tuple[str, ...]]:
    return [
        ("", "7/15", "+1.00", "Acc1"),  # invalid_id
        (str(rng.randrange(10**9)), "2/30", "-3.10", "Acc1"),  # invalid_date
        (str(rng.randrange(10**9)), "13/01", "5", "Acc1"),  # invalid_date
        (str(rng.randrange(10**9)), "7/15", '"1,000.00"', "Acc1"),  # invalid_amount (quoted)
        (str(rng.randrange(10**9)), "7/15", "$12.00", "Acc1"),  # invalid_amount
        (str(rng.randrange(10**9)), "7/15", "1.234", "Acc1"),  # invalid_amount
        (str(rng.randrange(10**9)), "7/15", "9.99", "bad account!"),  # invalid_account
    ]


def _rows(spec: SyntheticSpec) -> Iterator[str]:
    rng = random.Random(spec.seed)
    go = spec.style is HeaderStyle.GO
    accounts = [f"Acc{n:04d}" for n in range(1, spec.accounts + 1)]
    # Spending patterns: mostly small debits, a few larger credits (salary, refunds).
    for index in range(spec.rows):
        month = rng.randint(1, 12)
        day = rng.randint(1, _DAYS[month - 1] if spec.year is None else min(_DAYS[month - 1], 28))
        date = f"{month}/{day}" if spec.year is None else f"{month}/{day}/{spec.year}"
        credit = rng.random() < 0.3
        cents = rng.randint(100, 500_000) if credit else -rng.randint(1, 30_000)
        whole, frac = divmod(abs(cents), 100)
        sign = "-" if cents < 0 else ("+" if not go else "")
        if go:  # like the Go system's real file: always two decimals, no "+"
            amount = f"{sign}{whole}.{frac:02d}"
        else:  # like the challenge's example: "+60.5", "+10", "-20.46"
            amount = f"{sign}{whole}" if frac == 0 else f"{sign}{whole}.{frac:02d}".rstrip("0")
        tx_id = str(index)
        account = accounts[rng.randrange(len(accounts))]
        if spec.error_rate and rng.random() < spec.error_rate:
            kind = rng.randrange(9)
            if kind == 7:  # field_count
                yield f"{tx_id},{date},{amount},{account},extra" if go else f"{tx_id},{date}"
                continue
            if kind == 8 and index:  # duplicate_id (an id accepted earlier, same account)
                tx_id = str(rng.randrange(index))
                account = accounts[0]
            else:
                tx_id, date, amount, bad_account = _bad_rows(rng)[kind % 7]
                if go and bad_account != "Acc1":
                    account = bad_account
                elif not go and bad_account != "Acc1":
                    tx_id = "\x07bell"  # invalid_id instead: this style has no account column
        yield f"{tx_id},{date},{amount},{account}" if go else f"{tx_id},{date},{amount}"


def write_synthetic(spec: SyntheticSpec, out: TextIO) -> int:
    """Write the header and ``spec.rows`` records to ``out`` (streamed); return rows written."""
    go = spec.style is HeaderStyle.GO
    out.write("TransactionId,Date,Amount,AccountId\n" if go else "Id,Date,Transaction\n")
    written = 0
    lines: list[str] = []
    for line in _rows(spec):
        lines.append(line)
        if len(lines) >= 10_000:
            out.write("\n".join(lines) + "\n")
            written += len(lines)
            lines.clear()
    if lines:
        out.write("\n".join(lines) + "\n")
        written += len(lines)
    return written
