"""Many buckets: rows folded into per-(account, month) figures in bulk, with numpy.

A file of 50,000 accounts has about half a million (account, month) buckets. Appending each
amount to its bucket's own list (what :class:`~stori_pipeline.summary.Ledger` does for a few
buckets) then costs a lookup in a half-million-entry table per row, and every later step a
Python loop per bucket — all of it missing the CPU caches. Past
:attr:`~stori_pipeline.summary.Ledger.MANY_BUCKETS` buckets the ledger hands its rows to a
:class:`RowTable` instead: each row's bucket key and cents go into two flat arrays (one
C-level ``extend`` per batch), and every :data:`FOLD_ROWS` rows numpy sorts them by key and
sums each bucket's run (``argsort`` and ``add.reduceat``), then merges them into the buckets
folded before (two sorted runs: a stable sort merges them in linear time). The buckets come
out sorted and column by column, ready for the summaries' index.

Exact: the sums are 64-bit integers, and :meth:`RowTable.add` refuses rows once the
magnitudes of every amount it holds could add up past ``2**61`` cents, so no sum can
overflow; the ledger then goes back to Python's unbounded ints.

Only this module imports numpy, and only a ledger that outgrows ``MANY_BUCKETS`` imports
this module: a handler's cold start and a file of a few accounts never load it.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "EXACT_LIMIT",
    "FOLD_ROWS",
    "AccountFields",
    "RowTable",
    "by_account_rank",
    "folded",
    "grouped",
    "month_texts",
]

# Rows held in the flat arrays before they are folded: 8 MB of keys and cents, and the fold
# itself works on a few arrays of that size.
FOLD_ROWS = 1 << 19
# Below this sum of magnitudes (cents) no 64-bit sum of some of them can overflow, nor
# twice one plus a count (the half-up average, month_texts).
EXACT_LIMIT = 1 << 61

Ints = npt.NDArray[np.int64]


def grouped(keys: Ints, figures: Ints, *, runs: bool = False) -> tuple[Ints, Ints]:
    """Sum the rows of ``figures`` (shape ``(n, 5)``) that share a key; keys come out sorted.

    ``runs``: the keys are a few sorted runs (tables being merged), which a stable sort
    (timsort) merges in linear time.
    """
    if not len(keys):
        return keys, figures
    # Sums do not depend on the order within a key.
    order = np.argsort(keys, kind="stable" if runs else "quicksort")
    keys, figures = keys[order], figures[order]
    starts = _run_starts(keys)
    return keys[starts], np.add.reduceat(figures, starts, axis=0)


def folded(keys: Ints, cents: Ints) -> tuple[Ints, Ints]:
    """Rows (a key and an amount each) as :func:`grouped` buckets: keys, and five figures.

    The figures of a bucket are its count, and its credit and debit counts and cents. Only
    the keys and the amounts are sorted; each figure is then one sum per run of a key.
    """
    if not len(keys):
        return keys, np.empty((0, 5), dtype=np.int64)
    order = np.argsort(keys)
    keys, cents = keys[order], cents[order]
    starts = _run_starts(keys)
    figures = np.empty((len(starts), 5), dtype=np.int64)
    figures[:, 0] = np.diff(starts, append=len(keys))
    credit, debit = cents > 0, cents < 0
    figures[:, 1] = np.add.reduceat(credit, starts, dtype=np.int64)
    figures[:, 2] = np.add.reduceat(np.where(credit, cents, 0), starts)
    figures[:, 3] = np.add.reduceat(debit, starts, dtype=np.int64)
    figures[:, 4] = np.add.reduceat(np.where(debit, cents, 0), starts)
    return keys[starts], figures


def by_account_rank(keys: Ints, shift: int, ranks: Sequence[int]) -> tuple[Ints, Ints, Ints]:
    """The order of sorted bucket keys that puts the accounts in ``ranks`` order.

    ``keys`` are sorted, so each account's buckets are one run (its months in order):
    the runs are put in order of their account's rank, whole. Returns that order, the
    accounts (their indexes) in it, and where each one's buckets start in it.
    """
    accounts = keys >> shift
    starts = _run_starts(accounts)
    sizes = np.diff(starts, append=len(keys))
    owners = accounts[starts]
    ranked = np.argsort(np.asarray(ranks, dtype=np.int64)[owners])  # ranks are unique
    starts, sizes, owners = starts[ranked], sizes[ranked], owners[ranked]
    placed = np.cumsum(sizes) - sizes  # where each run starts once in order
    order = np.repeat(starts - placed, sizes) + np.arange(len(keys))
    return order, owners, placed


def _run_starts(keys: Ints) -> npt.NDArray[np.intp]:
    """Where each run of equal (sorted) keys starts."""
    edges = np.empty(len(keys), dtype=bool)
    edges[0] = True
    np.not_equal(keys[1:], keys[:-1], out=edges[1:])
    return np.flatnonzero(edges)


class RowTable:
    """Rows of many buckets: appended in bulk, folded by key with numpy.

    :meth:`figures` gives every bucket's key and its count, credit count and cents, debit
    count and cents (the ledger's five figures), sorted by key.
    """

    __slots__ = ("_cents", "_figures", "_keys", "_magnitude", "_table_keys")

    def __init__(self) -> None:
        """Start empty."""
        self._keys = array("q")
        self._cents = array("q")
        self._table_keys: Ints = np.empty(0, dtype=np.int64)
        self._figures: Ints = np.empty((0, 5), dtype=np.int64)
        self._magnitude = 0  # the sum of every amount's magnitude, in cents

    @property
    def magnitude(self) -> int:
        """The sum of the magnitudes of every amount added, in cents."""
        return self._magnitude

    def add(self, keys: Sequence[int], cents: Sequence[int]) -> bool:
        """Add rows (a bucket key and an amount each); ``False``, adding none, past the limit.

        The limit is :data:`EXACT_LIMIT` for the magnitudes of every amount held: below it,
        the 64-bit sums are exact.
        """
        magnitude = self._magnitude + sum(map(abs, cents))
        if magnitude >= EXACT_LIMIT:
            return False
        self._magnitude = magnitude
        self._keys.extend(keys)
        self._cents.extend(cents)
        if len(self._keys) >= FOLD_ROWS:
            self._fold()
        return True

    def figures(self) -> tuple[Ints, Ints]:
        """Every bucket's key (sorted) and its five figures (shape ``(buckets, 5)``)."""
        self._fold()
        return self._table_keys, self._figures

    def _fold(self) -> None:
        if not self._keys:
            return
        keys = np.frombuffer(self._keys, dtype=np.int64)
        cents = np.frombuffer(self._cents, dtype=np.int64)
        new_keys, new_figures = folded(keys, cents)
        del keys, cents  # views of the arrays, which are replaced next
        self._keys, self._cents = array("q"), array("q")
        if len(self._table_keys):
            new_keys, new_figures = grouped(
                np.concatenate((self._table_keys, new_keys)),
                np.concatenate((self._figures, new_figures)),
                runs=True,
            )
        self._table_keys, self._figures = new_keys, new_figures


AccountFields = tuple[str, int, int, str, str, int, str, str]

# Cents as written after the dot, by value: "00" to "99" (only 0-99 index it: divmod's).
_CENTS_TEXTS = np.array([f"{cents:02d}" for cents in range(100)], dtype=object)
# A month's JSON "year" by year (0: none), up to the last year a date can have (2100).
_YEAR_TEXTS = np.array(["null"] + [str(year) for year in range(1, 2101)], dtype=object)


def _year_texts(years: Ints) -> npt.NDArray[np.object_]:
    """Each bucket's JSON ``year`` value: its year, or ``null`` (year 0)."""
    if not len(years) or (years.min() >= 0 and years.max() < len(_YEAR_TEXTS)):
        return _YEAR_TEXTS[years]
    return np.where(years == 0, "null", years.astype(str)).astype(object)


def _flow_parts(counts: Ints, magnitudes: Ints) -> list[npt.NDArray[np.generic]]:
    """A flow's count, its total's whole and cents, its half-up average's whole and cents.

    ``magnitudes`` are the totals without their sign. The average is ``(2 * cents + count)
    // (2 * count)``, as :func:`~stori_pipeline.money.average_cents` rounds, with a divisor
    of 1 where there are no rows (nothing of it is written then). The cents are their
    two-digit texts (:data:`_CENTS_TEXTS`), written with ``%s``.
    """
    whole, cents = np.divmod(magnitudes, 100)
    mean = (2 * magnitudes + counts) // (2 * np.maximum(counts, 1))
    mean_whole, mean_cents = np.divmod(mean, 100)
    return [counts, whole, _CENTS_TEXTS[cents], mean_whole, _CENTS_TEXTS[mean_cents]]


def _flow_fields(parts: list[npt.NDArray[np.generic]], sign: str) -> tuple[list[str], list[str]]:
    """A flow's ``total`` and ``average`` JSON values per account.

    ``"0.00"`` and ``null`` where it has no rows, as :func:`stori_pipeline.summary._flow_texts`.
    """
    whole, cents, mean_whole, mean_cents = (p.tolist() for p in parts[1:])
    totals = list(map((sign + "%d.%s").__mod__, zip(whole, cents, strict=True)))
    averages = list(map(f'"{sign}%d.%s"'.__mod__, zip(mean_whole, mean_cents, strict=True)))
    for at in np.flatnonzero(parts[0] == 0).tolist():
        totals[at], averages[at] = "0.00", "null"
    return totals, averages


def month_texts(
    months: Ints, columns: Sequence[Ints], starts: list[int], templates: Sequence[str]
) -> tuple[list[str], list[AccountFields]]:
    """Each bucket's SPEC §3 month text, and each account's own fields, column by column.

    ``months`` are the buckets' ``year * 16 + month`` keys and ``columns`` their five figures,
    in output order; ``starts`` where each account's buckets start; ``templates`` the month
    texts by which flows have rows: neither, debit only, credit only, both (a flow with rows
    is written as ``"%d.%02d"`` of its whole and cents, the sign in the template). The
    whole, the cents and the average of every flow are worked out in numpy, and each kind of
    month is then formatted with one C-level ``map`` (the cents as ready two-digit texts:
    ``"%02d"`` is the costliest conversion of the template). An account's fields are its balance,
    count, and its credit and debit flows' count, total and average, as JSON values
    (:func:`stori_pipeline.summary._ledger_json_texts`). The sums fit: the table's
    magnitudes stay below :data:`EXACT_LIMIT`.
    """
    counts, credit_counts, credit_cents, debit_counts, debit_cents = columns
    years = months >> 4
    head: list[npt.NDArray[np.generic]] = [_year_texts(years), months & 15, counts]
    credit = _flow_parts(credit_counts, credit_cents)
    debit = _flow_parts(debit_counts, -debit_cents)
    kinds = 2 * (credit_counts > 0) + (debit_counts > 0)
    texts: list[str] = [""] * len(months)
    for kind, template in enumerate(t.replace("%02d", "%s") for t in templates):
        at = np.flatnonzero(kinds == kind)
        if not len(at):
            continue
        chosen = head + (credit if kind & 2 else []) + (debit if kind & 1 else [])
        written = map(template.__mod__, zip(*(c[at].tolist() for c in chosen), strict=True))
        deque(map(texts.__setitem__, at.tolist(), written), maxlen=0)
    if not len(months):
        return texts, []
    total, c_count, c_cents, d_count, d_cents = (np.add.reduceat(c, starts) for c in columns)
    balance = c_cents + d_cents
    whole, cents = np.divmod(np.abs(balance), 100)
    signs = np.where(balance < 0, "-", "").astype(object).tolist()
    cents_texts = _CENTS_TEXTS[cents].tolist()
    balances = map("%s%d.%s".__mod__, zip(signs, whole.tolist(), cents_texts, strict=True))
    c_totals, c_averages = _flow_fields(_flow_parts(c_count, c_cents), "")
    d_totals, d_averages = _flow_fields(_flow_parts(d_count, -d_cents), "-")
    return texts, list(
        zip(
            balances,
            total.tolist(),
            c_count.tolist(),
            c_totals,
            c_averages,
            d_count.tolist(),
            d_totals,
            d_averages,
            strict=True,
        )
    )
