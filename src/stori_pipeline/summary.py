"""Per-account statistics (SPEC §3): frozen, mergeable summary values and their JSON.

A summary is built from per-(year, month) buckets of integer cents. Everything overall (the
balance, the credit and debit totals) is *derived* from the months, so "totals equal the sum
of the months" holds by construction, and two summaries of two halves of a file merge into the
summary of the whole by adding bucket to bucket.
"""

from __future__ import annotations

import json
import weakref
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, MutableSequence, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from itertools import compress, islice, repeat
from json.encoder import encode_basestring  # the C encoder's, as json.dumps uses
from operator import add, and_, lshift, lt, mul, ne, or_, rshift, sub
from typing import TYPE_CHECKING, Any, overload

from stori_pipeline.money import average_cents, cents_to_decimal, format_cents

if TYPE_CHECKING:
    from stori_pipeline.bucket_table import RowTable

__all__ = [
    "MONTH_NAMES",
    "AccountSummaries",
    "AccountSummary",
    "Flow",
    "Ledger",
    "MonthSummary",
    "add_to_buckets",
]

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


def _figures(bucket: list[int] | None, amounts: list[int] | None) -> tuple[int, int, int, int, int]:
    """A bucket's five figures with its pending ``amounts`` folded in (neither is changed)."""
    if bucket is None:
        count = credit_count = credit_cents = debit_count = debit_cents = 0
    else:
        count, credit_count, credit_cents, debit_count, debit_cents = bucket
    if amounts:
        count += len(amounts)
        if len(amounts) < _FEW:
            for amount in amounts:
                if amount > 0:
                    credit_count += 1
                    credit_cents += amount
                elif amount < 0:
                    debit_count += 1
                    debit_cents += amount
        else:
            positive = list(filter(_POSITIVE, amounts))
            credit_count += len(positive)
            total = sum(positive)
            credit_cents += total
            debit_count += len(amounts) - len(positive) - amounts.count(0)
            debit_cents += sum(amounts) - total
    return count, credit_count, credit_cents, debit_count, debit_cents


class _PendingLists(dict[int, "list[int] | None"]):
    """Bucket key -> its pending amounts; a missing key gets its (new, empty) list on lookup.

    A negative key (a row with no bucket) gets ``None`` and is not stored.
    """

    __slots__ = ()

    def __missing__(self, key: int) -> list[int] | None:
        if key < 0:
            return None
        amounts: list[int] = []
        self[key] = amounts
        return amounts


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

    Past :attr:`MANY_BUCKETS` buckets (a file of thousands of accounts) a lookup per row in a
    table that large, and a Python step per bucket, miss the CPU caches: the ledger turns
    :attr:`flat` and hands its rows to a numpy-backed
    :class:`~stori_pipeline.bucket_table.RowTable` (bucket keys and cents in flat arrays,
    sorted and summed in bulk), from which the summaries' index and JSON are built column by
    column too. Only such a ledger imports numpy.
    """

    ACCOUNT_SHIFT = 16  # year * 16 + month < 2**16 for every year SPEC §2 admits
    PENDING_LIMIT = 1 << 16  # amounts held before folding: about 2 MB of ints
    # Past this many buckets with pending lists, rows go to a RowTable instead (flat).
    MANY_BUCKETS = 1 << 14
    __slots__ = (
        "_exact",
        "_index",
        "_pending",
        "_pending_count",
        "_table",
        "_view",
        "accounts",
        "buckets",
    )

    def __init__(self) -> None:
        """Start empty."""
        self.buckets: dict[int, list[int]] = {}
        self.accounts: list[str] = []
        self._index: dict[str, int] = {}
        self._pending = _PendingLists()
        self._pending_count = 0
        self._view: weakref.ref[AccountSummaries] | None = None
        # Many buckets: their rows, folded with numpy (flat); _exact once sums outgrew it.
        self._table: RowTable | None = None
        self._exact = False

    def __getstate__(self) -> tuple[None, dict[str, object]]:
        """Pickled without its view of the summaries (a weak reference)."""
        return None, {name: getattr(self, name) for name in Ledger.__slots__} | {"_view": None}

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
        if self._view is not None:
            self._changing()
        key = self.account_key(account_id) | ((year or 0) * 16 + month)
        add_to_buckets(self.buckets, (key,), (amount_cents,))

    def writable_buckets(self) -> dict[int, list[int]]:
        """:attr:`buckets`, for a caller about to add to them (freezes summaries handed out)."""
        if self._view is not None:
            self._changing()
        return self.buckets

    def pending(self, key: int) -> list[int]:
        """The list collecting the amounts of bucket ``key`` until they are folded in.

        The same list serves the bucket until the ledger turns :attr:`flat` (folding empties
        it in place), so callers may keep it until then, e.g. in a cache keyed on raw field
        text.
        """
        amounts = self._pending[key]
        if amounts is None:
            raise ValueError(f"a bucket key is never negative: {key}")
        return amounts

    def pending_lists(self, keys: Sequence[int]) -> list[list[int] | None]:
        """:meth:`pending` of each key, ``None`` for a negative key (a row that has no bucket)."""
        # One C-level pass: only a key without a list yet calls back (_PendingLists).
        return list(map(self._pending.__getitem__, keys))

    @property
    def flat(self) -> bool:
        """Whether rows go to a :class:`~stori_pipeline.bucket_table.RowTable` (many buckets).

        Then :meth:`append_all` takes each row's bucket key (``account_key | year * 16 +
        month``), not its pending list, and :meth:`pending` is not used.
        """
        return self._table is not None

    def append_all(
        self, targets: Sequence[list[int]] | Sequence[int], amounts_cents: Sequence[int]
    ) -> None:
        """Add accepted amounts: each to its target, in one C-level pass.

        A target is the bucket's pending list (from :meth:`pending`), or its key when the
        ledger is :attr:`flat`. Past :attr:`MANY_BUCKETS` buckets with pending lists, the
        ledger turns flat after this call.
        """
        if self._view is not None:
            self._changing()
        table = self._table
        if table is not None:
            keys: Sequence[int] = targets  # type: ignore[assignment]  # flat: bucket keys
            if not table.add(keys, amounts_cents):  # the sums could overflow 64 bits
                self._leave_table()
                add_to_buckets(self.buckets, keys, amounts_cents)
            return
        # map() of the unbound list.append calls it at C speed; a zero-length deque drains it.
        deque(map(list.append, targets, amounts_cents), maxlen=0)  # type: ignore[arg-type]
        self._pending_count += len(amounts_cents)
        if len(self._pending) > self.MANY_BUCKETS and not self._exact:
            self._enter_table()
        elif self._pending_count >= max(self.PENDING_LIMIT, 4 * len(self._pending)):
            self.flush()

    def _enter_table(self) -> None:
        """Turn :attr:`flat`: fold the pending lists into the buckets, and drop them."""
        from stori_pipeline.bucket_table import RowTable  # noqa: PLC0415 - numpy: many buckets only

        self.flush()
        self._pending.clear()
        self._table = RowTable()

    def _leave_table(self) -> None:
        """Go back to Python ints for good: the table's buckets into :attr:`buckets`."""
        table, self._table, self._exact = self._table, None, True
        if table is None:
            return
        keys, figures = table.figures()
        add_figures(self.buckets, keys.tolist(), figures.tolist())

    def flush(self) -> None:
        """Fold every pending amount into its bucket (a few C-level calls per bucket)."""
        buckets = self.buckets
        for key, amounts in self._pending.items():
            if amounts:
                buckets[key] = list(_figures(buckets.get(key), amounts))
                amounts.clear()
        self._pending_count = 0

    def summaries(self) -> AccountSummaries:
        """The summaries, sorted by account id; months in SPEC §3 order.

        A lazy, read-only sequence (:class:`AccountSummaries`): each summary is built from the
        integer buckets when it is read, so memory follows one account, not every account.
        It compares equal to the tuple of the same frozen summaries. Adding to the ledger
        afterwards (:meth:`add`, :meth:`append_all`) first freezes it, so it never changes.
        """
        view = None if self._view is None else self._view()
        if view is None:
            view = AccountSummaries(self)
            self._view = weakref.ref(view)
        return view

    def _changing(self) -> None:
        """Freeze the summaries handed out, before the ledger changes under them."""
        view = None if self._view is None else self._view()
        self._view = None
        if view is not None:
            view.freeze()

    def _bucket_figures(self, stats: MutableSequence[int]) -> list[int]:
        """Append each bucket's five figures to ``stats``; return the keys in the same order.

        One pass in the ledger's own order (the order its lists and amounts were made in, so
        mostly the order they lie in memory): several times faster than key by key.
        """
        keys: list[int] = []
        add_key, extend, buckets = keys.append, stats.extend, self.buckets
        bucket = None
        for key, amounts in self._pending.items():
            if buckets:  # empty when a file of many accounts never filled PENDING_LIMIT
                bucket = buckets.get(key)
            if bucket is None and not amounts:
                continue  # a list made for rows that were then rejected
            add_key(key)
            extend(_figures(bucket, amounts))
        pending = self._pending
        for key, bucket in buckets.items():
            if key not in pending:  # filled by add_to_buckets alone
                add_key(key)
                extend(bucket)
        return keys

    def _bucket_index(self) -> _BucketIndex:
        """A snapshot of the buckets with rows, in output order: by account id, then month."""
        if self._table is not None:
            index = self._table_index()
            if index is not None:
                return index
            self._leave_table()  # sums past 64 bits: Python ints, then
        stats: MutableSequence[int] = array("q")
        try:
            keys = self._bucket_figures(stats)
        except OverflowError:  # a total past 2**63 cents: Python ints, then
            stats = []
            keys = self._bucket_figures(stats)
        shift = self.ACCOUNT_SHIFT
        # Each account's place in id order (its rank) replaces its index in the keys, so
        # sorting them puts every account's buckets together, in the order of the output.
        by_name, rank = _name_ranks(self.accounts)
        month_mask = (1 << shift) - 1
        ranked = map(
            or_,
            map(lshift, map(rank.__getitem__, map(rshift, keys, repeat(shift))), repeat(shift)),
            map(and_, keys, repeat(month_mask)),
        )
        bits = max(len(keys), 1).bit_length()
        # ranked key << bits | slot, sorted: the buckets in output order, each with its slot.
        packed = sorted(map(or_, map(lshift, ranked, repeat(bits)), range(len(keys))))
        del keys, rank
        slots = list(map(mul, map(and_, packed, repeat((1 << bits) - 1)), repeat(5)))
        columns = [_taken(stats, map(add, slots, repeat(figure))) for figure in range(5)]
        months = list(map(and_, map(rshift, packed, repeat(bits)), repeat(month_mask)))
        ranks = list(map(rshift, packed, repeat(bits + shift)))
        return _BucketIndex(months, columns, _spans(ranks, by_name))

    def _table_index(self) -> _BucketIndex | None:
        """:meth:`_bucket_index` of a :attr:`flat` ledger, in numpy; ``None`` past 64 bits."""
        import numpy as np  # noqa: PLC0415 - a flat ledger has loaded it already

        from stori_pipeline.bucket_table import (  # noqa: PLC0415
            EXACT_LIMIT,
            by_account_rank,
            grouped,
        )

        table = self._table
        assert table is not None
        self.flush()  # nothing pending, unless someone used pending() on a flat ledger
        keys, figures = table.figures()
        buckets = self.buckets  # rows the row-at-a-time path added, and the fold before
        if buckets:
            magnitude = sum(abs(b[2]) + abs(b[4]) for b in buckets.values())
            if table.magnitude + magnitude >= EXACT_LIMIT:
                return None
            keys, figures = grouped(
                np.concatenate((keys, np.fromiter(buckets, np.int64, len(buckets)))),
                np.concatenate((figures, np.array(list(buckets.values()), dtype=np.int64))),
            )
        if not len(keys):
            return _BucketIndex([], [[] for _ in range(5)], [])
        shift = self.ACCOUNT_SHIFT
        _by_name, rank = _name_ranks(self.accounts)  # as in _bucket_index
        order, accounts, starts = by_account_rank(keys, shift, rank)
        figures = figures[order]
        columns = [figures[:, figure].copy() for figure in range(5)]
        months = keys[order] & ((1 << shift) - 1)
        ends = np.append(starts[1:], len(keys))
        spans = list(zip(accounts.tolist(), starts.tolist(), ends.tolist(), strict=True))
        # numpy arrays slice like the lists and arrays of the Python path (and have tolist()).
        return _BucketIndex(months, columns, spans)  # type: ignore[arg-type]


def _name_ranks(names: Sequence[str]) -> tuple[list[int], list[int]]:
    """The account indexes in id order, and each account's place (rank) in that order."""
    by_name = sorted(range(len(names)), key=names.__getitem__)
    rank = [0] * len(names)
    deque(map(rank.__setitem__, by_name, range(len(names))), maxlen=0)
    return by_name, rank


def _taken(stats: MutableSequence[int], slots: Iterable[int]) -> MutableSequence[int]:
    """``stats[slot]`` for each slot, as the same kind of sequence (an array or a list)."""
    taken = map(stats.__getitem__, slots)
    return array("q", taken) if isinstance(stats, array) else list(taken)


def _spans(ranks: list[int], by_name: list[int]) -> list[tuple[int, int, int]]:
    """``(account index, start, end)`` of each run of equal ``ranks`` (sorted account ranks)."""
    if not ranks:
        return []
    starts = [0, *compress(range(1, len(ranks)), map(ne, islice(ranks, 1, None), ranks))]
    ends = [*islice(starts, 1, None), len(ranks)]
    accounts = map(by_name.__getitem__, map(ranks.__getitem__, starts))
    return list(zip(accounts, starts, ends, strict=True))


class _BucketIndex:
    """A ledger's buckets with rows, snapshotted in output order: by account id, then month.

    ``months[i]`` is bucket *i*'s ``year * 16 + month`` (year 0: none), and
    ``columns[f][i]`` its figure *f*: count, credit count, credit cents, debit count, debit
    cents (lists, arrays of 64-bit ints, or numpy arrays). ``order`` is ``(account index,
    start, end)`` of each account's buckets ``start:end``, by account id (each ``start`` is
    the ``end`` before it).
    """

    __slots__ = ("columns", "months", "order")

    def __init__(
        self,
        months: Sequence[int],
        columns: Sequence[Sequence[int]],
        order: list[tuple[int, int, int]],
    ) -> None:
        self.months, self.columns, self.order = months, columns, order

    def figures(self, start: int, end: int) -> Iterator[tuple[int, int, int, int, int, int]]:
        """Month key, count, credit count and cents, debit count and cents of each bucket.

        The buckets ``start:end``, in order, as Python ints.
        """
        return zip(*(_ints(c, start, end) for c in (self.months, *self.columns)), strict=True)

    def texts(
        self, low: int, high: int, starts: list[int], templates: Sequence[str]
    ) -> tuple[list[str], list[_AccountFields]]:
        """The month texts of buckets ``low:high``, and the fields of each account.

        ``starts`` are where the accounts' buckets start (from ``low``); ``templates`` the
        month texts by which flows have rows (neither, debit, credit, both).
        """
        if isinstance(self.months, list | array):  # the Python path's columns
            sizes = map(sub, [*islice(starts, 1, None), high - low], starts)
            return _month_texts(self.figures(low, high), sizes, templates)
        from stori_pipeline.bucket_table import month_texts  # noqa: PLC0415 - numpy columns

        columns = [c[low:high] for c in self.columns]
        return month_texts(self.months[low:high], columns, starts, templates)  # type: ignore[arg-type]


def _ints(column: Sequence[int], start: int, end: int) -> list[int]:
    """``column[start:end]`` as a list of Python ints (from a list, an array or numpy)."""
    part = column[start:end]
    return part if isinstance(part, list) else part.tolist()  # type: ignore[attr-defined]


# An account's balance, count, and credit and debit count, total and average, as JSON values
# (the account's text is _ACCOUNT_JSON of its id, these, and its months).
_AccountFields = tuple[str, int, int, str, str, int, str, str]
# The months written at a time (in whole accounts): a few MB of Python ints, whatever the file.
_TEXT_BATCH = 8192

_ACCOUNT_JSON = (
    '{"accountId": %s, "balance": "%s", "transactionCount": %d, '
    '"credit": {"count": %d, "total": "%s", "average": %s}, '
    '"debit": {"count": %d, "total": "%s", "average": %s}, "months": [%s]}'
)


def _compact(template: str) -> str:
    # The templates hold no text of their own with ", " or ": " but their separators.
    return template.replace(", ", ",").replace(": ", ":")


def _money(cents: int) -> str:
    """:func:`~stori_pipeline.money.format_cents`, inlined where it runs per month."""
    if cents < 0:
        whole, frac = divmod(-cents, 100)
        return f"-{whole}.{frac:02d}"
    whole, frac = divmod(cents, 100)
    return f"{whole}.{frac:02d}"


def _flow_texts(count: int, cents: int) -> tuple[str, str]:
    """A flow's ``total`` and ``average`` as JSON values (the average quoted, or ``null``)."""
    if not count:
        return "0.00", "null"
    total = _money(cents)
    if count == 1:
        return total, f'"{total}"'
    return total, f'"{_money(average_cents(cents, count))}"'


# A month's text from ints alone, by which flows have rows: ``"%d.%02d"`` formats the whole
# and the cents of a (credit) total or average, ``"-%d.%02d"`` those of a debit one.
_NO_FLOW = '{"count": 0, "total": "0.00", "average": null}'
_CREDIT_FLOW = '{"count": %d, "total": "%d.%02d", "average": "%d.%02d"}'
_DEBIT_FLOW = '{"count": %d, "total": "-%d.%02d", "average": "-%d.%02d"}'
_MONTH_HEAD = '{"year": %s, "month": %d, "transactionCount": %d, "credit": '
_MONTH_TEMPLATES = tuple(
    _MONTH_HEAD + credit + ', "debit": ' + debit + "}"
    for credit, debit in (
        (_NO_FLOW, _NO_FLOW),
        (_NO_FLOW, _DEBIT_FLOW),
        (_CREDIT_FLOW, _NO_FLOW),
        (_CREDIT_FLOW, _DEBIT_FLOW),
    )
)
_TEMPLATES = {
    False: (*_MONTH_TEMPLATES, _ACCOUNT_JSON),
    True: (*map(_compact, _MONTH_TEMPLATES), _compact(_ACCOUNT_JSON)),
}


def _ledger_json_texts(
    index: _BucketIndex, names: Sequence[str], *, compact: bool
) -> Iterator[str]:
    """Each account's SPEC §3 JSON text, in account id order, straight from ``index``.

    Exactly ``json.dumps(summary.to_json(), ensure_ascii=False)`` (with ``separators=(",",
    ":")`` when ``compact``), without building the summaries or their dicts. The months of
    about :data:`_TEXT_BATCH` buckets (whole accounts) are written at a time
    (:meth:`_BucketIndex.texts`), then each account's own figures and its months' texts.
    """
    *month_templates, account_json = _TEMPLATES[compact]
    separator = "," if compact else ", "
    order = index.order
    ends = [end for _account, _start, end in order]
    first = 0
    while first < len(order):
        # The accounts up to the first one that reaches _TEXT_BATCH buckets, or to the end.
        low = order[first][1]
        last = min(bisect_left(ends, low + _TEXT_BATCH, first), len(order) - 1) + 1
        accounts = order[first:last]
        starts = [start - low for _account, start, _end in accounts]
        texts, fields = index.texts(low, ends[last - 1], starts, month_templates)
        for (account, start, end), account_fields in zip(accounts, fields, strict=True):
            yield account_json % (
                encode_basestring(names[account]),
                *account_fields,
                separator.join(texts[start - low : end - low]),
            )
        first = last


def _month_texts(
    buckets: Iterable[tuple[int, int, int, int, int, int]],
    sizes: Iterable[int],
    templates: Sequence[str],
) -> tuple[list[str], list[_AccountFields]]:
    """Each bucket's month text, and each account's own fields (``sizes``: its buckets).

    The Python path of :meth:`_BucketIndex.texts`. The money formatting is inlined, as this
    runs once per (account, month). A credit total is positive and a debit total negative
    whenever their count is not zero, and so are their averages (every amount is at least a
    cent), so each is written from its whole and cents parts with the sign in the template.
    """
    neither, debit_only, credit_only, both = templates
    months: list[str] = []
    fields: list[_AccountFields] = []
    append = months.append
    buckets = iter(buckets)
    for size in sizes:
        total = credit_count = credit_cents = debit_count = debit_cents = 0
        for key, count, c_count, c_cents, d_count, d_cents in islice(buckets, size):
            total += count
            year = key >> 4 or "null"
            month = key & 15
            if d_count:
                debit_count += d_count
                debit_cents += d_cents
                d_whole, d_frac = divmod(-d_cents, 100)
                if d_count == 1:
                    d_mean = d_whole, d_frac
                else:
                    average, rest = divmod(-d_cents, d_count)
                    d_mean = divmod(average + (2 * rest >= d_count), 100)
            if c_count:
                credit_count += c_count
                credit_cents += c_cents
                c_whole, c_frac = divmod(c_cents, 100)
                if c_count == 1:
                    c_mean = c_whole, c_frac
                else:
                    average, rest = divmod(c_cents, c_count)
                    c_mean = divmod(average + (2 * rest >= c_count), 100)
                if d_count:
                    append(
                        both
                        % (
                            year,
                            month,
                            count,
                            c_count,
                            c_whole,
                            c_frac,
                            *c_mean,
                            d_count,
                            d_whole,
                            d_frac,
                            *d_mean,
                        )
                    )
                else:
                    append(credit_only % (year, month, count, c_count, c_whole, c_frac, *c_mean))
            elif d_count:
                append(debit_only % (year, month, count, d_count, d_whole, d_frac, *d_mean))
            else:
                append(neither % (year, month, count))
        c_total, c_average = _flow_texts(credit_count, credit_cents)
        d_total, d_average = _flow_texts(debit_count, debit_cents)
        balance = _money(credit_cents + debit_cents)
        fields.append(
            (balance, total, credit_count, c_total, c_average, debit_count, d_total, d_average)
        )
    return months, fields


class AccountSummaries(Sequence[AccountSummary]):
    """A ledger's summaries sorted by account id, each built only when it is read.

    What :meth:`Ledger.summaries` returns: a read-only sequence over the ledger's integer
    buckets (and the amounts not yet folded into them), so a file of 200,000 accounts is never
    held as 200,000 frozen summaries at once; :meth:`json_texts` skips the summaries
    altogether. It behaves as the tuple of the same summaries does: ``len``, indexing,
    slicing (which gives a tuple), iteration, ``==`` with such a tuple, hashing.
    """

    __slots__ = ("__weakref__", "_frozen", "_index", "_ledger")

    def __init__(self, ledger: Ledger) -> None:
        """A view of ``ledger`` (which freezes it before it changes: :meth:`freeze`)."""
        self._ledger: Ledger | None = ledger
        self._frozen: tuple[AccountSummary, ...] | None = None
        # The buckets' figures, read in one pass when first needed (Ledger._bucket_index).
        self._index: _BucketIndex | None = None

    def _order(self) -> list[tuple[int, int, int]]:
        return self._bucket_index().order

    def _bucket_index(self) -> _BucketIndex:
        if self._index is None:
            ledger = self._ledger
            assert ledger is not None
            self._index = ledger._bucket_index()  # noqa: SLF001 - the view is the ledger's own
        return self._index

    def _summary(self, account: tuple[int, int, int]) -> AccountSummary:
        ledger = self._ledger
        assert ledger is not None
        index, start, end = account
        months = tuple(
            MonthSummary(key // 16 or None, key % 16, count, Flow(cc, ccents), Flow(dc, dcents))
            for key, count, cc, ccents, dc, dcents in self._bucket_index().figures(start, end)
        )
        return AccountSummary(ledger.accounts[index], months)

    def freeze(self) -> None:
        """Build every summary now and stop reading the ledger (it is about to change)."""
        if self._frozen is None:
            self._frozen = tuple(self)
            self._ledger = self._index = None

    def json_texts(self, *, compact: bool = False) -> Iterator[str]:
        """Each summary's JSON text in order: ``json.dumps`` of its ``to_json()``."""
        if self._frozen is not None:
            separators = (",", ":") if compact else (", ", ": ")
            for summary in self._frozen:
                yield _dumps(summary.to_json(), separators)
            return
        ledger = self._ledger
        assert ledger is not None
        yield from _ledger_json_texts(self._bucket_index(), ledger.accounts, compact=compact)

    def account_ids(self) -> Iterator[str]:
        """The accounts' ids in order (:meth:`json_texts`'s order), without their summaries."""
        if self._frozen is not None:
            for summary in self._frozen:
                yield summary.account_id
            return
        ledger = self._ledger
        assert ledger is not None
        names = ledger.accounts
        for index, _start, _end in self._order():
            yield names[index]

    def __len__(self) -> int:
        """How many accounts have a summary."""
        if self._frozen is not None:
            return len(self._frozen)
        return len(self._order())

    def __iter__(self) -> Iterator[AccountSummary]:
        """The summaries in account id order, each built as it is reached."""
        if self._frozen is not None:
            yield from self._frozen
            return
        for account in self._order():
            yield self._summary(account)

    @overload
    def __getitem__(self, position: int) -> AccountSummary: ...
    @overload
    def __getitem__(self, position: slice) -> tuple[AccountSummary, ...]: ...
    def __getitem__(self, position: int | slice) -> AccountSummary | tuple[AccountSummary, ...]:
        """The summary at ``position`` (a slice gives a tuple)."""
        if self._frozen is not None:
            return self._frozen[position]
        order = self._order()
        if isinstance(position, slice):
            return tuple(self._summary(account) for account in order[position])
        return self._summary(order[position])

    def __eq__(self, other: object) -> bool:
        """Equal to a tuple of the same summaries, or to another view of them."""
        if isinstance(other, AccountSummaries):
            return other is self or tuple(self) == tuple(other)
        if isinstance(other, tuple):
            return tuple(self) == other
        return NotImplemented

    def __hash__(self) -> int:
        """The hash of the tuple of the same summaries."""
        return hash(tuple(self))

    def __repr__(self) -> str:
        """A count, not every summary."""
        return f"<AccountSummaries of {len(self)} accounts>"

    def __reduce__(
        self,
    ) -> tuple[type[tuple[AccountSummary, ...]], tuple[tuple[AccountSummary, ...]]]:
        """Pickled and copied as the tuple of its summaries (a copy needs no ledger)."""
        return tuple, (tuple(self),)


def _dumps(value: object, separators: tuple[str, str]) -> str:
    return json.dumps(value, separators=separators, ensure_ascii=False)


def add_figures(
    buckets: dict[int, list[int]], keys: Iterable[int], figures: Iterable[Sequence[int]]
) -> None:
    """Add buckets' five figures each (``[count, credit count, credit cents, ...]``) by key."""
    for key, five in zip(keys, figures, strict=True):
        bucket = buckets.get(key)
        if bucket is None:
            buckets[key] = list(five)
        else:
            buckets[key] = list(map(add, bucket, five))


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
