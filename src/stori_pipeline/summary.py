"""Per-account statistics (SPEC §3): frozen, mergeable summary values and their JSON.

A summary is built from per-(year, month) buckets of integer cents. Everything overall (the
balance, the credit and debit totals) is *derived* from the months, so "totals equal the sum
of the months" holds by construction, and two summaries of two halves of a file merge into the
summary of the whole by adding bucket to bucket.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from itertools import repeat
from operator import lt
from typing import Any

from stori_pipeline.money import average_cents, cents_to_decimal, format_cents

__all__ = ["MONTH_NAMES", "AccountSummary", "Flow", "Ledger", "MonthSummary", "add_to_buckets"]

# English on purpose: the locale of a Lambda sandbox is not the customer's language.
MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

# ``_POSITIVE(x)`` is ``0 < x``: a C-level predicate for filter() (a partial of a builtin
# calls faster than the bound slot wrapper ``(0).__lt__``).
_POSITIVE = partial(lt, 0)
# Below this many amounts, folding them one by one costs less than the C-level calls.
_FEW = 4


@dataclass(frozen=True, slots=True)
class Flow:
    """Money flowing one way (credit or debit): how many rows and their total in cents."""

    count: int = 0
    total_cents: int = 0

    @property
    def total(self) -> Decimal:
        """The total as an exact ``Decimal`` (negative for debits)."""
        return cents_to_decimal(self.total_cents)

    @property
    def average_cents(self) -> int | None:
        """``total / count`` rounded half-up to cents, ``None`` when there are no rows."""
        return average_cents(self.total_cents, self.count) if self.count else None

    @property
    def average(self) -> Decimal | None:
        """The average as a ``Decimal`` with two places, ``None`` when there are no rows."""
        cents = self.average_cents
        return None if cents is None else cents_to_decimal(cents)

    def __add__(self, other: Flow) -> Flow:
        return Flow(self.count + other.count, self.total_cents + other.total_cents)

    def to_json(self) -> dict[str, Any]:
        """``{"count", "total", "average"}`` with money as two-decimal strings."""
        cents = self.average_cents
        return {
            "count": self.count,
            "total": format_cents(self.total_cents),
            "average": None if cents is None else format_cents(cents),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Flow:
        """Inverse of :meth:`to_json` (the average is derived, not read)."""
        return cls(int(data["count"]), _cents(data["total"]))


@dataclass(frozen=True, slots=True)
class MonthSummary:
    """The rows of one (year, month); ``year`` is ``None`` when the dates carry no year."""

    year: int | None
    month: int
    transaction_count: int
    credit: Flow
    debit: Flow

    @property
    def label(self) -> str:
        """The month's English name, with the year when known: ``"July"``, ``"July 2024"``."""
        name = MONTH_NAMES[self.month - 1]
        return name if self.year is None else f"{name} {self.year}"

    @property
    def sort_key(self) -> tuple[int, int]:
        """SPEC §3's order: by (year or 0, month)."""
        return (self.year or 0, self.month)

    def __add__(self, other: MonthSummary) -> MonthSummary:
        if self.sort_key != other.sort_key or self.year != other.year:
            raise ValueError("only summaries of the same (year, month) can be added")
        return MonthSummary(
            self.year,
            self.month,
            self.transaction_count + other.transaction_count,
            self.credit + other.credit,
            self.debit + other.debit,
        )

    def to_json(self) -> dict[str, Any]:
        """SPEC §3's month entry."""
        return {
            "year": self.year,
            "month": self.month,
            "transactionCount": self.transaction_count,
            "credit": self.credit.to_json(),
            "debit": self.debit.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MonthSummary:
        """Inverse of :meth:`to_json`."""
        year = data["year"]
        return cls(
            None if year is None else int(year),
            int(data["month"]),
            int(data["transactionCount"]),
            Flow.from_json(data["credit"]),
            Flow.from_json(data["debit"]),
        )


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """Everything SPEC §3 says about one account; months are sorted by (year or 0, month)."""

    account_id: str
    months: tuple[MonthSummary, ...]

    @property
    def transaction_count(self) -> int:
        """Accepted rows, zero amounts included."""
        return sum(m.transaction_count for m in self.months)

    @property
    def credit(self) -> Flow:
        """All amounts > 0."""
        return sum((m.credit for m in self.months), Flow())

    @property
    def debit(self) -> Flow:
        """All amounts < 0 (negative total and average)."""
        return sum((m.debit for m in self.months), Flow())

    @property
    def balance_cents(self) -> int:
        """Sum of every accepted amount, in cents."""
        return sum(m.credit.total_cents + m.debit.total_cents for m in self.months)

    @property
    def balance(self) -> Decimal:
        """Sum of every accepted amount."""
        return cents_to_decimal(self.balance_cents)

    def merge(self, other: AccountSummary) -> AccountSummary:
        """The summary of both sets of rows (same account): adds month to month."""
        if other.account_id != self.account_id:
            raise ValueError(
                f"cannot merge summaries of {self.account_id!r} and {other.account_id!r}"
            )
        by_key = {(m.year, m.month): m for m in self.months}
        for month in other.months:
            key = (month.year, month.month)
            by_key[key] = by_key[key] + month if key in by_key else month
        return AccountSummary(self.account_id, _sorted(by_key.values()))

    def to_json(self) -> dict[str, Any]:
        """SPEC §3's JSON shape (money as two-decimal strings)."""
        return {
            "accountId": self.account_id,
            "balance": format_cents(self.balance_cents),
            "transactionCount": self.transaction_count,
            "credit": self.credit.to_json(),
            "debit": self.debit.to_json(),
            "months": [m.to_json() for m in self.months],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AccountSummary:
        """Rebuild from SPEC §3's JSON (overall figures are re-derived from the months)."""
        months = _sorted(MonthSummary.from_json(m) for m in data["months"])
        return cls(str(data["accountId"]), months)


def _sorted(months: Iterable[MonthSummary]) -> tuple[MonthSummary, ...]:
    return tuple(sorted(months, key=lambda m: m.sort_key))


def _cents(text: object) -> int:
    value = Decimal(str(text)).scaleb(2)
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} has more than two decimal places")
    return int(value)


class Ledger:
    """A mutable accumulator of per-account, per-month buckets (the hot path's target).

    One flat dict for every account: ``buckets[account_key | year * 16 + month]`` is
    ``[count, credit count, credit cents, debit count, debit cents]``, year 0 standing for
    "no year", where ``account_key`` is the account's registration index shifted left by
    :attr:`ACCOUNT_SHIFT`. Int keys hash for free, and a batch of rows from many accounts
    folds in with one loop. :meth:`summaries` freezes it.

    The column-wise hot path does not even loop: it appends each amount to its bucket's
    *pending* list (:meth:`pending`, :meth:`append_all`, one C-level pass), and those lists
    fold into the buckets with a few C-level calls per bucket once they hold
    :attr:`PENDING_LIMIT` amounts (or four per bucket, when there are more buckets than that
    allows: folding walks every list, so it stays a constant cost per row even for a file of
    100,000 accounts), or when :meth:`summaries` is asked for.
    """

    ACCOUNT_SHIFT = 16  # year * 16 + month < 2**16 for every year SPEC §2 admits
    PENDING_LIMIT = 1 << 16  # amounts held before folding: about 2 MB of ints
    __slots__ = ("_index", "_pending", "_pending_count", "accounts", "buckets")

    def __init__(self) -> None:
        """Start empty."""
        self.buckets: dict[int, list[int]] = {}
        self.accounts: list[str] = []
        self._index: dict[str, int] = {}
        self._pending: dict[int, list[int]] = {}
        self._pending_count = 0

    def account_key(self, account_id: str) -> int:
        """The account's part of a bucket key, registering the account when it is new.

        A registered account with no bucket (all its rows rejected) has no summary.
        """
        index = self._index.get(account_id)
        if index is None:
            index = self._index[account_id] = len(self.accounts)
            self.accounts.append(account_id)
        return index << self.ACCOUNT_SHIFT

    def add(self, account_id: str, year: int | None, month: int, amount_cents: int) -> None:
        """Fold one accepted amount in."""
        key = self.account_key(account_id) | ((year or 0) * 16 + month)
        add_to_buckets(self.buckets, (key,), (amount_cents,))

    def pending(self, key: int) -> list[int]:
        """The list collecting the amounts of bucket ``key`` until they are folded in.

        The same list serves the bucket for the ledger's lifetime (folding empties it in
        place), so callers may keep it, e.g. in a cache keyed on raw field text.
        """
        amounts = self._pending.get(key)
        if amounts is None:
            amounts = self._pending[key] = []
        return amounts

    def pending_lists(self, keys: Sequence[int]) -> list[list[int] | None]:
        """:meth:`pending` of each key, ``None`` for a negative key (a row that has no bucket)."""
        try:
            return list(map(self._pending.__getitem__, keys))
        except KeyError:
            pass  # a bucket without a list yet, or a negative key
        return [None if key < 0 else self.pending(key) for key in keys]

    def append_all(self, targets: Iterable[list[int]], amounts_cents: Sequence[int]) -> None:
        """Append each amount to its target list (from :meth:`pending`), in one C-level pass."""
        # map() of the unbound list.append calls it at C speed; a zero-length deque drains it.
        deque(map(list.append, targets, amounts_cents), maxlen=0)
        self._pending_count += len(amounts_cents)
        if self._pending_count >= max(self.PENDING_LIMIT, 4 * len(self._pending)):
            self.flush()

    def flush(self) -> None:
        """Fold every pending amount into its bucket (a few C-level calls per bucket)."""
        buckets = self.buckets
        for key, amounts in self._pending.items():
            if not amounts:
                continue
            if len(amounts) < _FEW:  # a file of many accounts: a few rows per bucket
                add_to_buckets(buckets, repeat(key, len(amounts)), amounts)
                amounts.clear()
                continue
            positive = list(filter(_POSITIVE, amounts))
            credit_cents = sum(positive)
            debit_count = len(amounts) - len(positive) - amounts.count(0)
            bucket = buckets.get(key)
            if bucket is None:
                bucket = buckets[key] = [0, 0, 0, 0, 0]
            bucket[0] += len(amounts)
            bucket[1] += len(positive)
            bucket[2] += credit_cents
            bucket[3] += debit_count
            bucket[4] += sum(amounts) - credit_cents
            amounts.clear()
        self._pending_count = 0

    def summaries(self) -> tuple[AccountSummary, ...]:
        """Frozen summaries, sorted by account id; months in SPEC §3 order."""
        self.flush()
        months: dict[int, list[MonthSummary]] = {}
        mask = (1 << self.ACCOUNT_SHIFT) - 1
        buckets = self.buckets
        for key in sorted(buckets):  # ints sort several times faster than (int, list) pairs
            count, credit_count, credit_cents, debit_count, debit_cents = buckets[key]
            month_key = key & mask
            months.setdefault(key >> self.ACCOUNT_SHIFT, []).append(
                MonthSummary(
                    month_key // 16 or None,
                    month_key % 16,
                    count,
                    Flow(credit_count, credit_cents),
                    Flow(debit_count, debit_cents),
                )
            )
        return tuple(
            sorted(
                (AccountSummary(self.accounts[index], tuple(m)) for index, m in months.items()),
                key=lambda summary: summary.account_id,
            )
        )


def add_to_buckets(
    buckets: dict[int, list[int]], keys: Iterable[int], amounts_cents: Iterable[int]
) -> None:
    """Fold amounts into buckets (``Ledger.buckets``), one bucket key per amount."""
    for key, amount in zip(keys, amounts_cents, strict=True):
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = [0, 0, 0, 0, 0]
        bucket[0] += 1
        if amount > 0:
            bucket[1] += 1
            bucket[2] += amount
        elif amount < 0:
            bucket[3] += 1
            bucket[4] += amount
