"""The summary values: SPEC §3's JSON in and out, merging, and the Ledger accumulator."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from stori_pipeline import AccountSummary, Flow, Ledger, MonthSummary
from tests.spec_example import spec_example_json

# SPEC §3's JSON example, verbatim.
SPEC_EXAMPLE = spec_example_json()


def test_spec_example_round_trips() -> None:
    """from_json of SPEC §3's example gives it back unchanged, with the right values."""
    summary = AccountSummary.from_json(copy.deepcopy(SPEC_EXAMPLE))
    assert summary.to_json() == SPEC_EXAMPLE
    assert summary.balance == Decimal("39.74")
    assert summary.transaction_count == 4
    assert summary.credit.average == Decimal("35.25")
    assert summary.debit.average == Decimal("-15.38")
    assert summary.debit.total == Decimal("-30.76")


def test_merge_with_itself_doubles() -> None:
    """Merging a summary with itself doubles counts and totals, keeps months."""
    summary = AccountSummary.from_json(SPEC_EXAMPLE)
    twice = summary.merge(summary).to_json()
    assert twice["balance"] == "79.48"
    assert twice["transactionCount"] == 8
    assert twice["credit"] == {"count": 4, "total": "141.00", "average": "35.25"}
    assert twice["debit"] == {"count": 4, "total": "-61.52", "average": "-15.38"}
    assert [(m["month"], m["transactionCount"]) for m in twice["months"]] == [(7, 4), (8, 4)]


def test_merge_of_different_accounts_refused() -> None:
    """Two accounts' summaries are never silently merged."""
    a = AccountSummary.from_json(SPEC_EXAMPLE)
    b = AccountSummary.from_json({**SPEC_EXAMPLE, "accountId": "Other"})
    with pytest.raises(ValueError, match="Other"):
        a.merge(b)


def test_merge_keeps_month_order() -> None:
    """Merged months stay sorted by (year or 0, month)."""
    late = AccountSummary("A", (MonthSummary(2024, 1, 1, Flow(1, 100), Flow()),))
    early = AccountSummary(
        "A",
        (
            MonthSummary(None, 12, 1, Flow(), Flow(1, -5)),
            MonthSummary(2023, 3, 1, Flow(1, 7), Flow()),
        ),
    )
    merged = late.merge(early)
    assert [(m.year, m.month) for m in merged.months] == [(None, 12), (2023, 3), (2024, 1)]
    assert merged == early.merge(late)


@pytest.mark.parametrize(
    ("total_cents", "count", "average"),
    [
        (-5, 3, "-0.02"),
        (25, 2, "0.13"),
        (-25, 2, "-0.13"),
        (1, 2, "0.01"),
        (-1, 2, "-0.01"),
        (1, 3, "0.00"),
        (-1, 3, "0.00"),
        (200, 3, "0.67"),
        (-200, 3, "-0.67"),
    ],
)
def test_flow_average_half_up(total_cents: int, count: int, average: str) -> None:
    """Flow averages round half-up (ties away from zero); a zero average is '0.00'."""
    assert Flow(count, total_cents).to_json()["average"] == average


def test_flow_without_rows() -> None:
    """An empty flow: total '0.00', average null."""
    assert Flow().to_json() == {"count": 0, "total": "0.00", "average": None}
    assert Flow().average is None


def test_ledger_builds_summaries() -> None:
    """Ledger.add folds amounts into per-account, per-month buckets; zero is neither flow."""
    ledger = Ledger()
    ledger.add("B", None, 7, 6050)
    ledger.add("B", None, 7, -1030)
    ledger.add("B", None, 8, 0)
    ledger.add("A", 2024, 1, -1)
    ledger.add("B", 2023, 7, 100)
    a, b = ledger.summaries()
    assert a.to_json()["balance"] == "-0.01"
    assert b.account_id == "B"
    assert b.to_json()["balance"] == "51.20"
    assert [(m.year, m.month, m.transaction_count) for m in b.months] == [
        (None, 7, 2),
        (None, 8, 1),
        (2023, 7, 1),
    ]
    assert b.credit == Flow(2, 6150)
    assert b.debit == Flow(1, -1030)


class _SmallLedger(Ledger):
    """A ledger that folds its pending amounts early, so folding happens between batches."""

    __slots__ = ()
    PENDING_LIMIT = 7


def test_pending_amounts_fold_into_the_same_buckets_as_add() -> None:
    """Amounts appended to pending lists give exactly the summaries Ledger.add gives."""
    rows = [
        ("A" if i % 3 else "B", 2024 if i % 5 else None, i % 2 + 1, (i % 21 - 10) * 101)
        for i in range(200)
    ]
    assert any(cents == 0 for *_, cents in rows)
    by_add, by_pending = Ledger(), _SmallLedger()
    for account, year, month, cents in rows:
        by_add.add(account, year, month, cents)
    for start in range(0, len(rows), 30):
        chunk = rows[start : start + 30]
        targets = [
            by_pending.pending(by_pending.account_key(account) | ((year or 0) * 16 + month))
            for account, year, month, _ in chunk
        ]
        by_pending.append_all(targets, [cents for *_, cents in chunk])
    assert by_pending.buckets  # folded on the way (8 buckets: every 32 amounts)
    assert by_pending.summaries() == by_add.summaries()
    assert by_pending.summaries() == by_add.summaries()  # folding twice adds nothing


def test_an_account_with_only_an_empty_pending_list_has_no_summary() -> None:
    """A pending list made for rows that were then rejected creates no bucket."""
    ledger = Ledger()
    ledger.pending(ledger.account_key("A") | 7)
    ledger.add("B", None, 7, 100)
    assert [s.account_id for s in ledger.summaries()] == ["B"]
