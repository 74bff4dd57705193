"""SPEC §3 statistics: totals, counts, half-up averages, money formatting, month ordering."""

from __future__ import annotations

import csv
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.spec_example import spec_example_json
from tests.unit._support import summarize_bytes, summarize_every_chunking

CHALLENGE = "Id,Date,Transaction\n"
ACCOUNT = "AccountId123"


def summary_of(rows: list[tuple[str, str]]) -> dict[str, Any]:
    """The single account summary of (date, amount) rows with distinct ids."""
    text = CHALLENGE + "".join(f"{i},{d},{a}\n" for i, (d, a) in enumerate(rows))
    out = summarize_bytes(text.encode(), account=ACCOUNT)
    assert out["rejected"] == []
    (account,) = out["accounts"]
    return dict(account)


def two_places(value: Decimal) -> str:
    """Half-up to cents, as SPEC §3 presents money."""
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def test_worked_example_independently(example_csv: Path) -> None:
    """The challenge example: 39.74, July 2, August 2, avg debit -15.38, avg credit 35.25."""
    with example_csv.open(newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    amounts = [Decimal(r["Transaction"]) for r in records]
    credit_amounts = [a for a in amounts if a > 0]
    debit_amounts = [a for a in amounts if a < 0]
    assert two_places(sum(amounts, Decimal(0))) == "39.74"
    assert two_places(sum(debit_amounts, Decimal(0)) / len(debit_amounts)) == "-15.38"
    assert two_places(sum(credit_amounts, Decimal(0)) / len(credit_amounts)) == "35.25"

    out = summarize_every_chunking(example_csv.read_bytes(), account=ACCOUNT)
    assert out == {
        "rowsRead": 4,
        "rowsAccepted": 4,
        "rowsRejected": 0,
        "accounts": [spec_example_json()],
        "rejected": [],
        "fileError": None,
    }


def test_seed_file_independently(seed_csv: Path) -> None:
    """The 3,000-row seed file: per-month counts and totals recomputed with csv + Decimal."""
    months: dict[int, list[Decimal]] = defaultdict(list)
    with seed_csv.open(newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    assert len(records) == 3000
    assert {r["AccountId"] for r in records} == {"AccountId123"}
    for record in records:
        months[int(record["Date"].split("/")[0])].append(Decimal(record["Amount"]))

    out = summarize_every_chunking(seed_csv.read_bytes())
    assert (out["rowsRead"], out["rowsAccepted"], out["rowsRejected"]) == (3000, 3000, 0)
    (account,) = out["accounts"]
    assert account["accountId"] == "AccountId123"
    assert account["transactionCount"] == 3000
    everything = [a for amounts in months.values() for a in amounts]
    assert account["balance"] == two_places(sum(everything, Decimal(0)))
    assert [(m["year"], m["month"]) for m in account["months"]] == [
        (None, month) for month in sorted(months)
    ]
    for entry in account["months"]:
        amounts = months[entry["month"]]
        credit_amounts = [a for a in amounts if a > 0]
        debit_amounts = [a for a in amounts if a < 0]
        assert entry["transactionCount"] == len(amounts)
        assert entry["credit"]["count"] == len(credit_amounts)
        assert entry["debit"]["count"] == len(debit_amounts)
        credit_total = sum(credit_amounts, Decimal(0))
        debit_total = sum(debit_amounts, Decimal(0))
        assert entry["credit"]["total"] == two_places(credit_total)
        assert entry["debit"]["total"] == two_places(debit_total)
        assert entry["credit"]["average"] == two_places(credit_total / len(credit_amounts))
        assert entry["debit"]["average"] == two_places(debit_total / len(debit_amounts))


@pytest.mark.parametrize(
    ("amounts", "credit_average", "debit_average"),
    [
        (["-0.01", "-0.01", "-0.03"], None, "-0.02"),  # -0.01666…
        (["-0.02", "-0.02", "-0.01"], None, "-0.02"),  # -0.01666…
        (["0.12", "0.13"], "0.13", None),  # 0.125 ties up
        (["-0.12", "-0.13"], None, "-0.13"),  # -0.125 ties away from zero
        (["0.01", "0.00"], "0.01", None),  # the zero is not a credit
        (["0.01", "0.02"], "0.02", None),  # 0.015
        (["-0.01", "-0.02"], None, "-0.02"),  # -0.015
        (["0.01", "0.01", "0.02"], "0.01", None),  # 0.01333…
        (["1", "2", "2"], "1.67", None),
        (["-1", "-2", "-2"], None, "-1.67"),
        (["0.05", "0.05", "0.05", "0.06"], "0.05", None),  # 0.0525
        (["0.05", "0.05", "0.06", "0.06"], "0.06", None),  # 0.055
        (["999999999999999.99", "999999999999999.98"], "999999999999999.99", None),  # .985
        (["0.01"] * 7 + ["0.00"], "0.01", None),
        (["-0.01"] * 8, None, "-0.01"),
        (["+0.01", "-0.01"], "0.01", "-0.01"),
    ],
)
def test_half_up_averages(
    amounts: list[str], credit_average: str | None, debit_average: str | None
) -> None:
    """Averages are total / count rounded half-up (ties away from zero) to 2 places."""
    account = summary_of([("7/15", a) for a in amounts])
    assert account["credit"]["average"] == credit_average
    assert account["debit"]["average"] == debit_average
    assert account["months"][0]["credit"]["average"] == credit_average
    assert account["months"][0]["debit"]["average"] == debit_average


def test_zero_balance_is_not_negative_zero() -> None:
    """A balance that sums to zero prints '0.00', never '-0.00'."""
    account = summary_of([("7/15", "-5.10"), ("7/16", "+5.10"), ("8/1", "-0"), ("8/2", "-0.00")])
    assert account["balance"] == "0.00"
    august = account["months"][1]
    assert august["credit"] == {"count": 0, "total": "0.00", "average": None}
    assert august["debit"] == {"count": 0, "total": "0.00", "average": None}
    assert august["transactionCount"] == 2


def test_averages_null_when_no_flow() -> None:
    """Only credit_amounts: debit count 0, total '0.00', average null (overall and per month)."""
    account = summary_of([("7/15", "5"), ("8/15", "7")])
    assert account["debit"] == {"count": 0, "total": "0.00", "average": None}
    for month in account["months"]:
        assert month["debit"]["average"] is None
        assert month["credit"]["average"] is not None


def test_money_always_two_digits() -> None:
    """Money strings always have exactly two fractional digits."""
    account = summary_of([("7/15", "5"), ("7/16", "-3.5"), ("7/17", "100000")])
    assert account["balance"] == "100001.50"
    assert account["credit"]["total"] == "100005.00"
    assert account["credit"]["average"] == "50002.50"
    assert account["debit"]["total"] == "-3.50"
    assert account["debit"]["average"] == "-3.50"


def test_large_totals_are_exact() -> None:
    """Totals beyond float precision stay exact (Decimal, never float)."""
    rows = [("7/15", "999999999999999.99")] * 3 + [("7/16", "0.01")]
    account = summary_of(rows)
    assert account["balance"] == "2999999999999999.98"
    assert account["credit"]["total"] == "2999999999999999.98"
    # 749999999999999.995 is a tie: half-up gives 750000000000000.00 (a float would not).
    assert account["credit"]["average"] == "750000000000000.00"


def test_months_sorted_with_mixed_years() -> None:
    """Months sort by (year or 0, month): year-less first, then by year and month."""
    account = summary_of(
        [
            ("1/5/2024", "1"),
            ("12/1", "1"),
            ("2023-12-31", "1"),
            ("3/3", "1"),
            ("2/1/2024", "1"),
            ("2024-01-20", "1"),
            ("7/4/1900", "1"),
            ("11/30/2100", "1"),
        ]
    )
    assert [(m["year"], m["month"], m["transactionCount"]) for m in account["months"]] == [
        (None, 3, 1),
        (None, 12, 1),
        (1900, 7, 1),
        (2023, 12, 1),
        (2024, 1, 2),
        (2024, 2, 1),
        (2100, 11, 1),
    ]


def test_same_month_different_years_are_separate() -> None:
    """7/15, 7/15/2023 and 2024-07-15 are three different (year, month) buckets."""
    account = summary_of([("7/15", "1"), ("7/15/2023", "2"), ("2024-07-15", "4")])
    assert [(m["year"], m["credit"]["total"]) for m in account["months"]] == [
        (None, "1.00"),
        (2023, "2.00"),
        (2024, "4.00"),
    ]


def test_accounts_sorted_and_separate() -> None:
    """Accounts are listed sorted by accountId, each with only its own rows."""
    text = (
        "TransactionId,Date,Amount,AccountId\n"
        "1,7/15,5,zeta\n2,7/15,-1,Alpha\n3,8/15,2,alpha\n4,7/15,3,Beta_1\n5,7/15,-2,zeta\n"
    )
    out = summarize_bytes(text.encode())
    assert [(a["accountId"], a["balance"], a["transactionCount"]) for a in out["accounts"]] == [
        ("Alpha", "-1.00", 1),
        ("Beta_1", "3.00", 1),
        ("alpha", "2.00", 1),
        ("zeta", "3.00", 2),
    ]


def test_summary_keys_exactly() -> None:
    """Every summary, flow and month has exactly SPEC §3's keys."""
    account = summary_of([("7/15", "5"), ("8/15", "-7")])
    assert set(account) == {
        "accountId",
        "balance",
        "transactionCount",
        "credit",
        "debit",
        "months",
    }
    for flow in (account["credit"], account["debit"]):
        assert set(flow) == {"count", "total", "average"}
    for month in account["months"]:
        assert set(month) == {"year", "month", "transactionCount", "credit", "debit"}
        for flow in (month["credit"], month["debit"]):
            assert set(flow) == {"count", "total", "average"}
