"""Many buckets: rows folded into per-(account, month) figures in bulk, with numpy.

A file of 50,000 accounts has about half a million (account, month) buckets. Appending each
amount to its bucket's own list (what :class:`~stori_pipeline.summary.Ledger` does for a few
buckets) then costs a lookup in a half-million-entry table per row, and every later step a
Python loop per bucket — all of it missing the CPU caches. Past
:attr:`~stori_pipeline.summary.Ledger.MANY_BUCKETS` buckets the ledger hands its rows to a
:class:`RowTable` instead: each row's bucket key and cents go into two flat arrays (one
C-level ``extend`` per batch), and every :data:`FOLD_ROWS` rows numpy sorts them by key and
sums each bucket's run (``argsort`` and ``add.reduceat``). The buckets come out sorted and
column by column, ready for the summaries' index.

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
    "grouped",
    "month_texts",
    "row_figures",
]

# Rows held in the flat arrays before they are folded: 8 MB of keys and cents, and the fold
# itself works on a few arrays of that size.
FOLD_ROWS = 1 << 19
# Below this sum of magnitudes (cents) no 64-bit sum of some of them can overflow, nor
# twice one plus a count (the half-up average, month_texts).
EXACT_LIMIT = 1 << 61

Ints = npt.NDArray[np.int64]


def grouped(keys: Ints, figures: Ints) -> tuple[Ints, Ints]:
    """Sum the rows of ``figures`` (shape ``(n, 5)``) that share a key; keys come out sorted."""
    if not len(keys):
        return keys, figures
    order = np.argsort(keys)  # sums do not depend on the order within a key
    keys, figures = keys[order], figures[order]
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return keys[starts], np.add.reduceat(figures, starts, axis=0)


def row_figures(cents: Ints) -> Ints:
    """Each amount's five figures: 1, and the credit or debit count and cents it adds."""
    figures = np.zeros((len(cents), 5), dtype=np.int64)
    credit, debit = cents > 0, cents < 0
    figures[:, 0] = 1
    figures[:, 1] = credit
    figures[:, 2] = np.where(credit, cents, 0)
    figures[:, 3] = debit
    figures[:, 4] = np.where(debit, cents, 0)
    return figures


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
        new_keys, new_figures = grouped(keys, row_figures(cents))
        del keys, cents  # views of the arrays, which are replaced next
        self._keys, self._cents = array("q"), array("q")
        if len(self._table_keys):
            new_keys, new_figures = grouped(
                np.concatenate((self._table_keys, new_keys)),
                np.concatenate((self._figures, new_figures)),
            )
        self._table_keys, self._figures = new_keys, new_figures


AccountFields = tuple[str, int, int, str, str, int, str, str]


def _flow_parts(counts: Ints, magnitudes: Ints) -> list[Ints]:
    """A flow's count, its total's whole and cents, its half-up average's whole and cents.

    ``magnitudes`` are the totals without their sign. The average is ``(2 * cents + count)
    // (2 * count)``, as :func:`~stori_pipeline.money.average_cents` rounds, with a divisor
    of 1 where there are no rows (nothing of it is written then).
    """
    whole, cents = np.divmod(magnitudes, 100)
    mean = (2 * magnitudes + counts) // (2 * np.maximum(counts, 1))
    mean_whole, mean_cents = np.divmod(mean, 100)
    return [counts, whole, cents, mean_whole, mean_cents]


def _flow_fields(parts: list[Ints], sign: str) -> tuple[list[str], list[str]]:
    """A flow's ``total`` and ``average`` JSON values per account.

    ``"0.00"`` and ``null`` where it has no rows, as :func:`stori_pipeline.summary._flow_texts`.
    """
    whole, cents, mean_whole, mean_cents = (p.tolist() for p in parts[1:])
    totals = list(map((sign + "%d.%02d").__mod__, zip(whole, cents, strict=True)))
    averages = list(map(f'"{sign}%d.%02d"'.__mod__, zip(mean_whole, mean_cents, strict=True)))
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
    month is then formatted with one C-level ``map``. An account's fields are its balance,
    count, and its credit and debit flows' count, total and average, as JSON values
    (:func:`stori_pipeline.summary._ledger_json_texts`). The sums fit: the table's
    magnitudes stay below :data:`EXACT_LIMIT`.
    """
    counts, credit_counts, credit_cents, debit_counts, debit_cents = columns
    years = months >> 4
    head: list[npt.NDArray[np.generic]] = [
        np.where(years == 0, "null", years.astype(str)).astype(object),
        months & 15,
        counts,
    ]
    credit = _flow_parts(credit_counts, credit_cents)
    debit = _flow_parts(debit_counts, -debit_cents)
    kinds = 2 * (credit_counts > 0) + (debit_counts > 0)
    texts: list[str] = [""] * len(months)
    for kind, template in enumerate(templates):
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
    balances = map("%s%d.%02d".__mod__, zip(signs, whole.tolist(), cents.tolist(), strict=True))
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
