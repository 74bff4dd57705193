"""Header resolution and row validation (SPEC §2): pure, synchronous, no I/O.

:class:`RowValidator` is the hot path of the whole system. It takes records in batches (one
Python frame per batch, not per row) and keeps small bounded caches keyed on the *raw* field
text, because dates and account ids repeat a great deal in real files: a cache hit replaces
trimming, a regex match and the conversion with one dict lookup. Batches go column by column
(``map``/``zip``/regex over whole columns, loops in C); only rows that are rejected, and small
batches, take the row-at-a-time path, which defines the exact semantics.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from itertools import accumulate, compress, islice, repeat
from operator import add, eq, gt, le, lshift, lt, not_, or_
from typing import NamedTuple, TypeVar, cast

from stori_pipeline.csv_blocks import Columns
from stori_pipeline.errors import FileRejectedError
from stori_pipeline.header_hints import header_hint
from stori_pipeline.money import cents_to_decimal, parse_cents
from stori_pipeline.summary import Ledger, add_to_buckets

__all__ = [
    "MAX_ID_LENGTH",
    "ColumnMap",
    "FileErrorCode",
    "RejectCode",
    "Rejection",
    "RowValidator",
    "Transaction",
    "is_valid_account",
    "parse_amount_cents",
    "parse_date",
    "resolve_header",
]

MAX_ID_LENGTH = 64
_TRIM = " \t"

# Header aliases: canonical field -> accepted (case-insensitive, trimmed) names.
_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "transactionid"),
    "date": ("date",),
    "amount": ("transaction", "amount"),
    "account": ("accountid",),
}
_REQUIRED = ("id", "date", "amount")

_AMOUNT_RE = re.compile(r"[+-]?[0-9]{1,15}(?:\.[0-9]{1,2})?")
# The same rule over a whole column joined with newlines (checked in one C-level match).
# Column patterns use possessive quantifiers and ASCII \d (exactly [0-9]): they match the
# same texts, and the regex engine runs them about twice as fast (nothing to backtrack).
_AMOUNTS_RE = re.compile(
    r"(?:[+-]?+\d{1,15}+(?:\.\d{1,2}+)?+\n)*+[+-]?+\d{1,15}+(?:\.\d{1,2}+)?+", re.ASCII
)
# Every amount of the column with exactly two decimals, the shape of real statements.
_TWO_DECIMALS_RE = re.compile(r"(?:[+-]?+\d{1,15}+\.\d\d\n)*+[+-]?+\d{1,15}+\.\d\d", re.ASCII)
# Runs of lines, each ended by a newline, as the column patterns check them (_odd_lines).
_TWO_DECIMALS_LINES_RE = re.compile(r"(?:[+-]?+\d{1,15}+\.\d\d\n)*+", re.ASCII)
_FEW_ODD = 16
_AMOUNT_LINES_RE = re.compile(r"(?:[+-]?+\d{1,15}+(?:\.\d{1,2}+)?+\n)*+", re.ASCII)
# The digits an amount's fraction contributes to its cents: "" -> "00", "5" -> "50", "05" -> "05".
_CENTS_DIGITS = {
    "": "00",
    **{d: d + "0" for d in "0123456789"},
    **{a + b: a + b for a in "0123456789" for b in "0123456789"},
}
_ACCOUNT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A "numeric" id: ASCII digits without leading zeros, at most 15 of them (so below 2**50).
# The duplicate check keys such ids by an int (account base | number) instead of a string:
# ints hash to themselves, so ids that grow row by row land in neighbouring slots of the
# million-entry dict instead of a cache miss each. "7" and "07" stay different ids: "07" is
# not numeric and keeps its string key, and ints never equal strings.
_NUMERIC_ID_DIGITS = 15
_NUMERIC_ID = rf"(?:0|[1-9]\d{{0,{_NUMERIC_ID_DIGITS - 1}}}+)"
_NUMERIC_IDS_RE = re.compile(rf"(?:{_NUMERIC_ID}\n)*+{_NUMERIC_ID}", re.ASCII)
_NUMERIC_ID_LINES_RE = re.compile(rf"(?:{_NUMERIC_ID}\n)*+", re.ASCII)  # (_odd_lines)
_ANY_NUMERIC_ID_RE = re.compile(rf"^{_NUMERIC_ID}$", re.MULTILINE | re.ASCII)
_ONE_NUMERIC_ID_RE = re.compile(_NUMERIC_ID, re.ASCII)
# Runs of numeric ids of one width, by width (_numeric_lines_of_width); a pattern of no run.
_NUMERIC_WIDTH_RES: dict[int, re.Pattern[str]] = {}
_NO_LINES_RE = re.compile(r"(?!)|")
# An account's ledger key (index << 16) shifted by this is its base for numeric-id keys.
_SEEN_SHIFT = 34
_ID_MASK = (1 << (_SEEN_SHIFT + 16)) - 1  # a numeric-id key's id (below 10**15 < 2**50)
_SHORT_DATE_RE = re.compile(r"([0-9]{1,2})/([0-9]{1,2})(?:/([0-9]{4}))?")
_ISO_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
# Lone surrogates are what the ``surrogateescape`` decoder makes of bytes that are not UTF-8.
_UNDECODABLE_RE = re.compile("[\udc80-\udcff]")

# Caches keyed on raw text are bounded so a hostile file cannot grow them without limit.
_CACHE_LIMIT = 1 << 16
# Cache sentinels of the cached value's own type: no date key is negative, and no valid amount
# reaches 10**17 cents (15 integer digits), so neither can collide with a real value.
_BAD_DATE = -1
_BAD_AMOUNT = 1 << 60
_BAD_ACCOUNT = -1
# Both -1: a bucket key (account key | month key) is then negative exactly when either is bad.
# Below this many records, the row-at-a-time path costs less than the column-wise one.
_ROW_AT_A_TIME = 16
_V = TypeVar("_V")


class RejectCode(StrEnum):
    """Why one row was rejected, in the order the checks run (SPEC §2)."""

    FIELD_COUNT = "field_count"
    INVALID_ENCODING = "invalid_encoding"
    INVALID_ID = "invalid_id"
    INVALID_DATE = "invalid_date"
    INVALID_AMOUNT = "invalid_amount"
    INVALID_ACCOUNT = "invalid_account"
    DUPLICATE_ID = "duplicate_id"


class FileErrorCode(StrEnum):
    """Why a whole file was rejected (SPEC §2)."""

    BAD_HEADER = "bad_header"
    NO_ACCOUNT = "no_account"
    EMPTY_FILE = "empty_file"
    # Not in SPEC §2: a record the CSV parser cannot read (a field over 131,072 characters,
    # in practice an unterminated quote). Rows before it were read; the file is rejected.
    MALFORMED_CSV = "malformed_csv"


class Rejection(NamedTuple):
    """One rejected row: the physical line its record ends on, its (trimmed) id, and why."""

    line: int
    id: str
    code: RejectCode

    def to_json(self) -> dict[str, object]:
        """The CLI / report shape: ``{"line", "id", "code"}``."""
        return {"line": self.line, "id": self.id, "code": str(self.code)}


# A NamedTuple rather than a frozen dataclass: it is just as immutable, and building one per
# row costs a third as much (frozen dataclasses assign through ``object.__setattr__``).
class Transaction(NamedTuple):
    """One accepted row. ``amount_cents`` is exact; ``year`` is ``None`` for ``M/D`` dates."""

    account_id: str
    transaction_id: str
    date: str
    year: int | None
    month: int
    amount_cents: int
    line: int

    @property
    def amount(self) -> Decimal:
        """The amount as an exact ``Decimal`` with two places."""
        return cents_to_decimal(self.amount_cents)

    @property
    def kind(self) -> str:
        """``credit`` (> 0), ``debit`` (< 0) or ``zero``."""
        if self.amount_cents > 0:
            return "credit"
        return "debit" if self.amount_cents < 0 else "zero"


class ColumnMap(NamedTuple):
    """Positions of the meaningful columns in a header; ``account`` is ``None`` when absent."""

    width: int
    id: int
    date: int
    amount: int
    account: int | None


def resolve_header(header: Sequence[str]) -> ColumnMap:
    """Map a header record to column positions, or raise ``FileRejectedError(bad_header)``.

    Names match case-insensitively after trimming white space; order is free and unknown
    columns are ignored. A missing required column, or two columns meaning the same thing
    (``Id`` and ``TransactionId``, or ``Date`` twice), rejects the file.
    """
    by_name = {alias: field for field, aliases in _ALIASES.items() for alias in aliases}
    found: dict[str, int] = {}
    for position, name in enumerate(header):
        field = by_name.get(name.strip().casefold())
        if field is None:
            continue
        if field in found:
            first = found[field]
            raise FileRejectedError(
                FileErrorCode.BAD_HEADER,
                f"columns {first + 1} ({header[first].strip()!r}) and {position + 1} "
                f"({name.strip()!r}) both mean {field!r}",
            )
        found[field] = position
    missing = [field for field in _REQUIRED if field not in found]
    if missing:
        expected = " / ".join(_ALIASES[missing[0]])
        hint = header_hint(header)
        raise FileRejectedError(
            FileErrorCode.BAD_HEADER,
            f"missing required column {missing[0]!r} (one of: {expected}, any case)"
            + (f"; {hint}" if hint else ""),
        )
    return ColumnMap(len(header), found["id"], found["date"], found["amount"], found.get("account"))


def _valid_id(text: str) -> bool:
    if not 0 < len(text) <= MAX_ID_LENGTH:
        return False
    # isprintable() is a fast C check that is False for every Cc character (and for a few
    # harmless ones such as NBSP); only then pay for the exact category test.
    return text.isprintable() or not any(unicodedata.category(c) == "Cc" for c in text)


def parse_date(text: str) -> tuple[int | None, int] | None:
    """``(year or None, month)`` of a trimmed date text, or ``None`` when it breaks SPEC §2."""
    match = _SHORT_DATE_RE.fullmatch(text)
    if match is not None:
        month, day, year_text = int(match[1]), int(match[2]), match[3]
        year = int(year_text) if year_text is not None else None
    else:
        match = _ISO_DATE_RE.fullmatch(text)
        if match is None:
            return None
        year, month, day = int(match[1]), int(match[2]), int(match[3])
    if not 1 <= month <= 12:
        return None
    if year is None:
        days = 29 if month == 2 else calendar.monthrange(2001, month)[1]
    elif 1900 <= year <= 2100:
        days = calendar.monthrange(year, month)[1]
    else:
        return None
    return (year, month) if 1 <= day <= days else None


def parse_amount_cents(text: str) -> int | None:
    """Cents of a trimmed amount text, or ``None`` when it breaks SPEC §2's pattern."""
    if _AMOUNT_RE.fullmatch(text) is None:
        return None
    return parse_cents(text)


def is_valid_account(text: str) -> bool:
    """Whether a trimmed account id matches ``^[A-Za-z0-9_-]{1,64}$``."""
    return _ACCOUNT_RE.fullmatch(text) is not None


def _printable(text: str) -> str:
    """Text safe for reports: undecodable bytes as U+FFFD, at most 128 characters."""
    if _UNDECODABLE_RE.search(text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text if len(text) <= 128 else text[:127] + "…"


class RowValidator:
    """Validates records against one header and folds accepted rows into a :class:`Ledger`.

    Args:
        header: the header record.
        default_account: the account for every row when the header has no account column
            (from the object key or the ``--account`` option).
        on_reject: called with each :class:`Rejection`, in file order.

    Raises:
        FileRejectedError: ``bad_header`` or ``no_account``.
    """

    def __init__(
        self,
        header: Sequence[str],
        *,
        default_account: str | None,
        on_reject: Callable[[Rejection], object],
    ) -> None:
        self.columns = resolve_header(header)
        if self.columns.account is None:
            account = (default_account or "").strip(_TRIM)
            if not account:
                raise FileRejectedError(
                    FileErrorCode.NO_ACCOUNT,
                    "no AccountId column, and no account from the object key or --account",
                )
            if not is_valid_account(account):
                raise FileRejectedError(
                    FileErrorCode.NO_ACCOUNT, f"account {account!r} is not a valid AccountId"
                )
            self.default_account = account
        else:
            self.default_account = ""  # every row names its own account
        self.ledger = Ledger()
        self.rows_read = 0
        self.rows_accepted = 0
        self.rows_rejected = 0
        # Set by the decoder once any byte failed to decode; until then no row can hold one.
        self.check_encoding = False
        # Lines of rows another part of the file already accepted (stori_pipeline.scaleout).
        self.duplicate_lines: frozenset[int] = frozenset()
        self._on_reject = on_reject
        self._dates: dict[str, int] = {}
        self._amounts: dict[str, int] = {}
        # Raw account text -> the ledger's account key (or _BAD_ACCOUNT), account key -> the
        # prefix that makes a string id unique across accounts in ``_seen``, and raw account
        # text -> the base that does the same for a numeric id (see _NUMERIC_ID).
        self._account_keys: dict[str, int] = {}
        self._prefixes: dict[int, str] = {0: ""}
        self._bases: dict[str, int] = {}
        # Raw date text -> the ledger's pending list of its bucket (None when the date or the
        # account is bad), per raw account text or for the default account: one C-level
        # lookup per row validates the date and the account and finds where the amount
        # goes. Bounded like every cache here (to within one batch).
        self._targets: dict[str, dict[str, list[int] | None]] = {}
        self._default_targets: dict[str, list[int] | None] = {}
        self._target_count = 0
        # Accepted ids, keyed by account and id (_seen_key): the only state that grows with
        # the file (SPEC §2). A dict of keys -> None, not a set: CPython GC-tracks every
        # set, and each full collection walked a million ids (a third of the run time); a
        # dict holding only strings and ints is never tracked.
        self._seen: dict[str | int, None] = {}
        # Numeric ids usually grow row by row. A batch whose ids are all numeric, increasing
        # and above every numeric id accepted so far (``_top``) cannot hold a duplicate: its
        # keys are set aside (``_deferred``: the ids as ints, or as their text joined by
        # newlines when they are of one width, and the rows' account keys — the cached ints
        # themselves, not new ones — ``None`` for the default account's) and only put into
        # ``_seen`` once some check needs it, which in a clean, ordered file is never.
        # ``_seen`` plus the deferred keys always hold exactly the accepted ones.
        self._deferred: list[tuple[str | Sequence[int], Sequence[int] | None]] = []
        self._deferred_firsts: list[int] = []  # each deferred batch's first id, increasing
        self._top = -1
        # Without an account column every row is the default account's: the ledger's first.
        self._default_key = (
            self.ledger.account_key(self.default_account) if self.default_account else 0
        )

    def _reject(self, line: int, record: Sequence[str], code: RejectCode) -> None:
        position = self.columns.id
        raw_id = record[position].strip(_TRIM) if position < len(record) else ""
        self.rows_rejected += 1
        self._on_reject(Rejection(line, _printable(raw_id), code))

    def _date(self, raw: str) -> int:
        parsed = parse_date(raw.strip(_TRIM))
        # Bucket keys are ints (cheap to hash): year * 16 + month, year 0 when unknown.
        value = _BAD_DATE if parsed is None else (parsed[0] or 0) * 16 + parsed[1]
        if len(self._dates) < _CACHE_LIMIT:
            self._dates[raw] = value
        return value

    def _dates_of(self, raws: list[str]) -> list[int]:
        return list(map(self._date, raws))

    def _amount(self, raw: str) -> int:
        value = parse_amount_cents(raw.strip(_TRIM))
        cents = _BAD_AMOUNT if value is None else value
        if len(self._amounts) < _CACHE_LIMIT:
            self._amounts[raw] = cents
        return cents

    def _account_key(self, raw: str) -> int:
        text = raw.strip(_TRIM)
        if is_valid_account(text):
            key = self.ledger.account_key(text)
            # "\x1f" cannot occur in a valid account id, so prefix + id is unique per account.
            self._prefixes[key] = text + "\x1f"
        else:
            key = _BAD_ACCOUNT
        if len(self._account_keys) < _CACHE_LIMIT:
            self._account_keys[raw] = key
        return key

    def _account_keys_of(self, raws: list[str]) -> list[int]:
        return list(map(self._account_key, raws))

    def _seen_key(self, account_key: int, tx_id: str) -> int | str:
        """The duplicate check's key of a (valid, trimmed) id of an account (_NUMERIC_ID)."""
        if _ONE_NUMERIC_ID_RE.fullmatch(tx_id) is not None:
            return account_key << _SEEN_SHIFT | int(tx_id)
        return self._prefixes[account_key] + tx_id

    def _bases_of(self, raws: list[str]) -> list[int]:
        bases = [self._account_key(raw) << _SEEN_SHIFT for raw in raws]
        if len(self._bases) < _CACHE_LIMIT:
            self._bases.update(zip(raws, bases, strict=True))
        return bases

    def _targets_of(
        self, dates: Sequence[str], accounts: Sequence[str] | None
    ) -> tuple[list[list[int] | None] | list[int], list[int] | None]:
        """Each row's pending list (see ``_targets``); ``None`` where the date or account is bad.

        Each row's bucket key instead when the ledger is flat (:meth:`_keys_of`).

        Also the rows' account keys when they were looked up on the way (else ``None``): in
        a file of many accounts that is most batches, and the later steps then need not look
        the account texts up again (each lookup in a table that large misses the CPU caches).
        """
        if self.ledger.flat:  # keys, not lists: the caches of lists are of no more use
            if self._target_count:
                self._targets.clear()
                self._default_targets.clear()
                self._target_count = 0
            return self._keys_of(dates, accounts)
        try:
            if accounts is None:
                return list(map(self._default_targets.__getitem__, dates)), None
            by_account = map(self._targets.__getitem__, accounts)
            return list(map(dict.__getitem__, by_account, dates)), None
        except KeyError:
            pass  # a date or account text not seen before: look the buckets up by int key
        keys, account_keys = self._keys_of(dates, accounts)
        targets = self.ledger.pending_lists(keys)
        if self._target_count < _CACHE_LIMIT:  # remember them, bad ones too, for next time
            if accounts is None:
                self._default_targets.update(zip(dates, targets, strict=True))
            else:
                for account, date, target in zip(accounts, dates, targets, strict=True):
                    by_date = self._targets.get(account)
                    if by_date is None:
                        by_date = self._targets[account] = {}
                    by_date[date] = target
            self._target_count += len(dates)  # an upper bound: some were there already
        return targets, account_keys

    def _keys_of(
        self, dates: Sequence[str], accounts: Sequence[str] | None
    ) -> tuple[list[int], list[int] | None]:
        """Each row's bucket key, negative where the date or account is bad; the account keys.

        Made from the cached date and account keys (``_BAD_DATE`` and ``_BAD_ACCOUNT`` are
        negative, and so is any key made with one): what a flat ledger takes
        (:attr:`Ledger.flat`), and what finds the pending lists otherwise. The account keys
        are ``None`` without an account column (the default account's key is 0).
        """
        month_keys = _lookup(self._dates, dates, self._dates_of)
        if accounts is None:
            return month_keys, None
        account_keys = _lookup(self._account_keys, accounts, self._account_keys_of)
        return list(map(or_, account_keys, month_keys)), account_keys

    def _account_keys_for(self, rows: _Rows, accounts: Sequence[str]) -> Sequence[int]:
        """The account keys of rows of an account column (``accounts``: ``rows.accounts``)."""
        if rows.account_keys is not None:
            return rows.account_keys
        return _lookup(self._account_keys, accounts, self._account_keys_of)

    def _bases_for(self, rows: _Rows, accounts: Sequence[str]) -> list[int]:
        """The numeric-id bases (:meth:`_bases_of`) of rows of an account column."""
        if rows.account_keys is not None:
            return list(map(lshift, rows.account_keys, repeat(_SEEN_SHIFT)))
        return _lookup(self._bases, accounts, self._bases_of)

    def _seen_keys_of(
        self, rows: _Rows, joined: str, numbers: Sequence[int] | None
    ) -> Sequence[int | str]:
        """The duplicate check's keys of the rows' valid ids (``joined`` by newlines).

        ``numbers`` are the ids as ints when every one is numeric.
        """
        ids, accounts = rows.ids, rows.accounts
        if numbers is not None:
            if accounts is None:
                return numbers  # the default account's base is 0
            return list(map(or_, self._bases_for(rows, accounts), numbers))
        if accounts is None:
            account_keys: Iterable[int] = repeat(self._default_key)
        else:
            account_keys = self._account_keys_for(rows, accounts)
        if _ANY_NUMERIC_ID_RE.search(joined) is not None:
            # Mixed: row by row. ``_top`` must stay above every numeric id accepted.
            keys = list(map(self._seen_key, account_keys, ids))
            numbers = [key & _ID_MASK for key in keys if key.__class__ is int]
            if numbers:
                self._top = max(self._top, *numbers)
            return keys
        if accounts is None:
            return ids
        return list(map(add, map(self._prefixes.__getitem__, account_keys), ids))

    def feed(
        self,
        records: Sequence[Sequence[str]],
        lines: Sequence[int],
        *,
        collect: bool = True,
    ) -> list[Transaction]:
        """Validate one batch of non-blank records; return the accepted ones when ``collect``.

        A batch takes the column-wise path, which passes the rows it cannot accept to the
        row-at-a-time path; small batches and files with undecodable bytes take the latter
        directly. Both apply the same rules to the same state, in file order.
        """
        accepted: list[Transaction] = []
        self.rows_read += len(records)
        if self.duplicate_lines:
            self._reserve(records, lines)
        self._feed(records, lines, collect, accepted)
        self.rows_accepted = self.rows_read - self.rows_rejected
        return accepted

    def _reserve(self, records: Sequence[Sequence[str]], lines: Sequence[int]) -> None:
        """Mark the ids of this batch's :attr:`duplicate_lines` as accepted already.

        Those rows were accepted by a read of this part of the file alone, and an earlier part
        accepted the same (account, Id): they are ``duplicate_id`` (SPEC §2), and so is any
        later row with that id, exactly as in one read of the whole file.
        """
        hits = self.duplicate_lines.intersection(lines)
        if not hits:
            return
        self._undefer()
        columns = self.columns
        for record, line in zip(records, lines, strict=True):
            if line not in hits:
                continue
            account_key = (
                self._default_key
                if columns.account is None
                else self._account_key(record[columns.account])
            )
            self._seen[self._seen_key(account_key, record[columns.id].strip(_TRIM))] = None

    def _feed(
        self,
        records: Sequence[Sequence[str]],
        lines: Sequence[int],
        collect: bool,
        accepted: list[Transaction],
    ) -> None:
        if len(records) <= _ROW_AT_A_TIME or self.check_encoding:
            self._feed_rows(records, lines, collect, accepted)
        else:
            self._feed_columns(records, lines, collect, accepted)

    def _feed_columns(
        self,
        records: Sequence[Sequence[str]],
        lines: Sequence[int],
        collect: bool,
        accepted: list[Transaction],
    ) -> None:
        """Take a batch of records column by column, at C speed.

        Each check runs over a whole column with ``map``/``zip``/``dict``/regex (loops in C). A
        row that fails a check before the duplicate one (field count, id, date, amount,
        account) changes no state, and among the others a row is a duplicate exactly when its
        key was seen before or earlier in the batch: so every other row is accepted at once,
        and the rows set aside go through the row-at-a-time path afterwards, in file order,
        for their exact rejection code (a duplicate then finds its key among the seen ones).
        Rows set aside are few: they are found by C-level scans (``list.index``, a regex
        resuming after each bad line) and deleted from the columns, never by a Python loop
        over the batch.
        """
        width, id_at, date_at, amount_at, account_at = self.columns
        # Positions (in ``records``) of the rows taken column-wise, and of the set-aside ones.
        columns, positions, aside = _columns(records, width)
        ids: Sequence[str] = columns[id_at]
        joined = "\n".join(ids)
        if " " in joined or "\t" in joined:
            ids = list(map(str.strip, ids, repeat(_TRIM)))
            joined = "\n".join(ids)
        bad: set[int] = set()  # indexes into the columns
        same_width, numeric, odd_ids, odd_width = _check_ids(ids, joined, bad)
        accounts = None if account_at is None else columns[account_at]
        targets, account_keys = self._targets_of(columns[date_at], accounts)
        bad.update(_without_bucket(targets, flat=self.ledger.flat))
        # Amounts rarely repeat enough for a cache to pay: they are checked and converted in
        # bulk, once the bad rows are known.
        amounts, joined_amounts, two_decimals, odd_amounts = _check_amounts(columns[amount_at], bad)
        dates = columns[date_at] if collect else None
        rows = _Rows(positions, ids, dates, accounts, targets, amounts, account_keys)
        if bad:
            # The rows left are of one shape when every odd line was a bad row's: then the
            # whole column converts at once, the bad rows' amounts as zeros, and is dropped
            # with the rest (no second join of the amounts left).
            if two_decimals or (odd_amounts is not None and bad.issuperset(odd_amounts)):
                rows.cents = _two_decimal_cents(joined_amounts, bad)
            aside += rows.drop(sorted(bad))
            joined = "\n".join(rows.ids)
            if not numeric:
                numeric = (
                    bad.issuperset(odd_ids)
                    if odd_ids is not None
                    else _NUMERIC_IDS_RE.fullmatch(joined) is not None
                )
            # A bad row's id (a stray "123456789") may have been the only one of its width.
            same_width = same_width or (
                numeric
                and bool(rows.ids)
                and (
                    bad.issuperset(odd_width)
                    if odd_width is not None
                    else _numeric_of_width(rows.ids, joined)
                )
            )
        if rows.ids:
            if not rows.cents:  # (the joined amounts still hold the bad rows')
                rows.cents = _valid_cents(
                    rows.amounts, "" if bad else joined_amounts, two_decimals=two_decimals
                )
            aside += self._accept(rows, joined, numeric, same_width=same_width)
            if collect:
                self._collect(rows, [lines[i] for i in rows.positions], accepted)
        if aside:
            aside.sort()
            aside_lines = [lines[i] for i in aside]
            self._feed_rows([records[i] for i in aside], aside_lines, collect, accepted)

    def _accept(self, rows: _Rows, joined: str, numeric: bool, *, same_width: bool) -> list[int]:
        """Accept every row that is not a duplicate; return the positions of the others.

        ``joined``: the rows' ids, joined by newlines; ``numeric``: every one is numeric;
        ``same_width``: of one width, too.
        """
        if same_width and not self.duplicate_lines and self._defer_texts(rows, joined):
            return []
        numbers = list(map(int, rows.ids)) if numeric else None
        # _reserve puts keys into _seen that _top does not know of.
        if numbers is not None and not self.duplicate_lines:
            deferred = self._defer(rows, numbers)
            if deferred is not None:
                return deferred
        self._undefer()
        if numbers is not None:
            self._top = max(self._top, *numbers)
        seen_keys = self._seen_keys_of(rows, joined, numbers)
        fresh = dict.fromkeys(seen_keys)
        duplicates: list[int] = []
        seen = self._seen
        if len(fresh) != len(seen_keys):  # a key twice in the batch: the exact, slow way
            keep = self._first_sightings(seen_keys)
            duplicates = rows.drop(list(compress(range(len(keep)), map(not_, keep))))
            fresh = dict.fromkeys(compress(seen_keys, keep))
        elif not seen.keys().isdisjoint(fresh):
            # Each key is once in the batch, so each one seen before is one row to set aside.
            again = seen.keys() & fresh.keys()
            duplicates = rows.drop(sorted(map(seen_keys.index, again)))
            for key in again:
                del fresh[key]
        seen.update(fresh)
        self.ledger.append_all(rows.targets, rows.cents)  # type: ignore[arg-type]  # no None
        return duplicates

    def _defer_texts(self, rows: _Rows, joined: str) -> bool:
        """Accept a batch of numeric ids of one width by deferring its keys as text, if it can.

        It can when the ids increase and the first is above ``_top``: ids of one width
        compare as texts as they do as ints, so no id is converted but the first and the
        last, and the batch is kept as its ids' text (``joined``), a fifth of the ints'
        memory; it is converted only when some check needs its ids (:meth:`_is_seen`).
        """
        ids = rows.ids
        first = int(ids[0])
        if first <= self._top or not all(map(lt, ids, islice(ids, 1, None))):
            return False
        keys = None if rows.accounts is None else self._account_keys_for(rows, rows.accounts)
        self._deferred.append((joined, keys))
        self._deferred_firsts.append(first)
        self._top = int(ids[-1])
        self.ledger.append_all(rows.targets, rows.cents)  # type: ignore[arg-type]  # no None
        return True

    def _defer(self, rows: _Rows, numbers: list[int]) -> list[int] | None:
        """Accept a batch of numeric ids by deferring its keys (see ``_deferred``), if it can.

        It can when its ids, but for a few, are above ``_top`` and each above the ones before
        it. The few others (an old id again, say) are checked one by one (:meth:`_is_seen`,
        and the batch's own ids) and go into ``_seen``. Returns the positions of the
        duplicates, ``None`` when there are too many others.
        """
        top = self._top
        low: list[int] = []
        rest = numbers
        if not (numbers[0] > top and all(map(lt, numbers, islice(numbers, 1, None)))):
            # Rows whose id is not above _top, then (rarely needed: a C-level call per id)
            # not above every id before it in the batch either. The others increase.
            low = list(compress(range(len(numbers)), map(le, numbers, repeat(top))))
            rest = _without(numbers, low[::-1])
            if not all(map(lt, rest, islice(rest, 1, None))):
                highs = accumulate(numbers, max, initial=top)
                low = list(compress(range(len(numbers)), map(le, numbers, highs)))
                rest = _without(numbers, low[::-1])
            if len(low) > _FEW_ODD:
                return None
        duplicates: list[int] = []
        keys = None if rows.accounts is None else self._account_keys_for(rows, rows.accounts)
        if low:
            firsts: set[int] = set()
            default = self._default_key
            rest_keys = None if keys is None else _without(keys, low[::-1])
            for i in low:
                number = numbers[i]
                account_key = default if keys is None else keys[i]
                base = account_key << _SEEN_SHIFT
                key = base | number
                # An equal id among the increasing ones can only be an earlier row's.
                at = bisect_left(rest, number)
                if (
                    key in firsts
                    or self._is_seen(key)
                    or (
                        at < len(rest)
                        and rest[at] == number
                        and (default if rest_keys is None else rest_keys[at]) == account_key
                    )
                ):
                    duplicates.append(i)
                else:
                    firsts.add(key)
            self._seen.update(dict.fromkeys(firsts))
            if rest:
                self._deferred.append((rest, rest_keys))
        elif rest:
            self._deferred.append((rest, keys))
        if rest:
            self._deferred_firsts.append(rest[0])
            self._top = rest[-1]
        dropped = rows.drop(duplicates) if duplicates else []
        self.ledger.append_all(rows.targets, rows.cents)  # type: ignore[arg-type]  # no None
        return dropped

    def _is_seen(self, key: int | str) -> bool:
        """Whether ``key`` was accepted: in ``_seen`` or among the deferred keys (bisect)."""
        if key in self._seen:
            return True
        if not self._deferred or not isinstance(key, int):
            return False
        number = key & _ID_MASK
        at = bisect_right(self._deferred_firsts, number) - 1
        if at < 0:
            return False
        numbers, account_keys = self._deferred[at]
        if isinstance(numbers, str):  # ids of one width, as text (_defer_texts)
            i = _line_of(numbers, str(number))
            if i < 0:
                return False
        else:
            i = bisect_left(numbers, number)
            if i == len(numbers) or numbers[i] != number:
                return False
        account_key = self._default_key if account_keys is None else account_keys[i]
        base = account_key << _SEEN_SHIFT
        return base == key - number

    def _undefer(self) -> None:
        """Put the deferred keys into ``_seen`` (see ``_deferred``), for an exact check."""
        seen, deferred = self._seen, self._deferred
        default = self._default_key
        while deferred:  # from the end, freeing each batch's ints as its keys go in
            numbers, account_keys = deferred.pop()
            # Ids kept as text (_defer_texts) become ints here.
            ints = map(int, numbers.split("\n")) if isinstance(numbers, str) else numbers
            bases = map(
                lshift,
                repeat(default) if account_keys is None else account_keys,
                repeat(_SEEN_SHIFT),
            )
            keys = map(or_, bases, ints)
            seen.update(zip(keys, repeat(None)))
        self._deferred_firsts.clear()

    def _first_sightings(self, keys: Sequence[int | str]) -> list[bool]:
        """For each key, whether it is neither seen already nor earlier in ``keys``."""
        seen, batch = self._seen, set()
        firsts = []
        for key in keys:
            firsts.append(key not in seen and key not in batch)
            batch.add(key)
        return firsts

    def _collect(self, rows: _Rows, lines: Sequence[int], accepted: list[Transaction]) -> None:
        """Build the :class:`Transaction` values of rows the column path accepted."""
        ids, dates, accounts, cents = rows.ids, rows.dates, rows.accounts, rows.cents
        assert dates is not None  # kept when collecting
        account_keys: Iterable[int] = (
            repeat(self._default_key)
            if accounts is None
            else self._account_keys_for(rows, accounts)
        )
        keys = _lookup(self._dates, dates, self._dates_of)
        names = self.ledger.accounts
        shift = self.ledger.ACCOUNT_SHIFT
        accepted.extend(
            Transaction(names[a >> shift], tx_id, date, key // 16 or None, key % 16, amount, line)
            for a, tx_id, date, key, amount, line in zip(
                account_keys,
                ids,
                map(str.strip, dates, repeat(_TRIM)),
                keys,
                cents,
                lines,
                strict=False,
            )
        )

    def _feed_rows(  # noqa: C901, PLR0912, PLR0915 - one frame per batch is the point (module doc)
        self,
        records: Sequence[Sequence[str]],
        lines: Sequence[int],
        collect: bool,
        accepted: list[Transaction],
    ) -> None:
        """The row-at-a-time path: exact for every row, including the ones to reject."""
        width, id_at, date_at, amount_at, account_at = self.columns
        account = self.default_account
        account_key = self._default_key
        dates, amounts, account_keys = self._dates, self._amounts, self._account_keys
        seen, buckets, names = self._seen, self.ledger.writable_buckets(), self.ledger.accounts
        deferred, top = self._deferred, self._top
        shift = self.ledger.ACCOUNT_SHIFT
        check_encoding = self.check_encoding
        reject = self._reject
        undecodable = _UNDECODABLE_RE.search
        for record, line in zip(records, lines, strict=True):
            if len(record) != width:
                reject(line, record, RejectCode.FIELD_COUNT)
                continue
            if check_encoding and any(undecodable(field) for field in record):
                reject(line, record, RejectCode.INVALID_ENCODING)
                continue
            tx_id = record[id_at].strip(_TRIM)
            if not (0 < len(tx_id) <= MAX_ID_LENGTH and tx_id.isprintable()) and not _valid_id(
                tx_id
            ):
                reject(line, record, RejectCode.INVALID_ID)
                continue
            month_key = dates.get(record[date_at])
            if month_key is None:
                month_key = self._date(record[date_at])
            if month_key == _BAD_DATE:
                reject(line, record, RejectCode.INVALID_DATE)
                continue
            cents = amounts.get(record[amount_at])
            if cents is None:
                cents = self._amount(record[amount_at])
            if cents == _BAD_AMOUNT:
                reject(line, record, RejectCode.INVALID_AMOUNT)
                continue
            if account_at is not None:
                account_key = account_keys.get(record[account_at], _BAD_ACCOUNT - 1)
                if account_key == _BAD_ACCOUNT - 1:
                    account_key = self._account_key(record[account_at])
                if account_key == _BAD_ACCOUNT:
                    reject(line, record, RejectCode.INVALID_ACCOUNT)
                    continue
                account = names[account_key >> shift]
            seen_key = self._seen_key(account_key, tx_id)
            if seen_key in seen or (deferred and self._is_seen(seen_key)):
                reject(line, record, RejectCode.DUPLICATE_ID)
                continue
            seen[seen_key] = None
            if seen_key.__class__ is int and seen_key & _ID_MASK > top:
                top = self._top = seen_key & _ID_MASK
            add_to_buckets(buckets, (account_key | month_key,), (cents,))
            if collect:
                year, month = divmod(month_key, 16)
                accepted.append(
                    Transaction(
                        account,
                        tx_id,
                        record[date_at].strip(_TRIM),
                        year or None,
                        month,
                        cents,
                        line,
                    )
                )


@dataclass(slots=True)
class _Rows:
    """The rows the column path is taking: positions in the batch, and their columns.

    ``amounts`` are the (trimmed) amount texts; ``cents`` is filled in once every row left
    has a valid amount (or before the bad rows are dropped, see :func:`_two_decimal_cents`),
    and from then on ``amounts`` is no longer kept in step.
    """

    positions: Sequence[int]
    ids: Sequence[str]
    dates: Sequence[str] | None  # only when the rows are collected
    accounts: Sequence[str] | None
    targets: Sequence[list[int] | int | None]  # bucket keys when the ledger is flat
    amounts: Sequence[str]
    account_keys: Sequence[int] | None = None  # when _targets_of looked them up
    cents: Sequence[int] = ()

    def drop(self, at: list[int]) -> list[int]:
        """Remove the rows at the (ascending) indexes ``at``; return their positions.

        A few rows out of a batch: deleting them from copies of the columns moves memory
        in C, where filtering every column would take a pass over every row.
        """
        dropped = [self.positions[i] for i in at]
        backwards = at[::-1]
        self.positions = _without(self.positions, backwards)
        self.ids = _without(self.ids, backwards)
        if self.dates is not None:
            self.dates = _without(self.dates, backwards)
        if self.accounts is not None:
            self.accounts = _without(self.accounts, backwards)
        self.targets = _without(self.targets, backwards)
        if self.account_keys is not None:
            self.account_keys = _without(self.account_keys, backwards)
        if self.cents:  # the amounts are of no more use
            self.cents = _without(self.cents, backwards)
        else:
            self.amounts = _without(self.amounts, backwards)
        return dropped


def _without(column: Sequence[_V], backwards: list[int]) -> list[_V]:
    """A copy of ``column`` without the items at the (descending) indexes ``backwards``."""
    kept = list(column)
    for i in backwards:
        del kept[i]
    return kept


def _without_bucket(targets: Sequence[list[int] | int | None], *, flat: bool) -> list[int]:
    """Positions of the rows with a bad date or account: no list, or (flat) a negative key."""
    if not flat:
        return _positions(targets, None) if None in targets else []
    keys = cast("list[int]", targets)
    if min(keys, default=0) >= 0:
        return []
    return list(compress(range(len(keys)), map(gt, repeat(0), keys)))


def _positions(values: Sequence[object], value: object) -> list[int]:
    """The indexes where ``value`` occurs in ``values`` (C-level scans, for a rare value)."""
    found: list[int] = []
    index = values.index
    try:
        position = index(value)
        while True:
            found.append(position)
            position = index(value, position + 1)
    except ValueError:
        return found


def _check_amounts(
    raws: Sequence[str], bad: set[int]
) -> tuple[Sequence[str], str, bool, list[int] | None]:
    """Check a column of amounts, adding the indexes of the bad ones to ``bad``.

    Returns the trimmed amounts, joined by newlines; whether every one has exactly two
    decimals; and, when only a few lines lack two decimals, their indexes (those that are not
    in ``bad`` are valid amounts of another shape).
    """
    amounts = raws
    joined = "\n".join(amounts)
    if " " in joined or "\t" in joined:
        amounts = list(map(str.strip, amounts, repeat(_TRIM)))
        joined = "\n".join(amounts)
    # A field holding a newline would add a line and could pass the joined match.
    if joined.count("\n") != len(amounts) - 1:
        bad.update(compress(range(len(amounts)), map(not_, map(_AMOUNT_RE.fullmatch, amounts))))
        return amounts, joined, False, None
    odd = _odd_lines(_TWO_DECIMALS_LINES_RE, joined)
    if odd == []:
        return amounts, joined, True, None
    if odd is not None:
        bad.update(i for i in odd if _AMOUNT_RE.fullmatch(amounts[i]) is None)
    elif _AMOUNTS_RE.fullmatch(joined) is None:
        bad.update(_bad_amount_lines(joined))
    return amounts, joined, False, odd


def _odd_lines(
    pattern: re.Pattern[str], joined: str, limit: int | None = _FEW_ODD
) -> list[int] | None:
    """Indexes of the lines of ``joined`` that ``pattern`` (a run of good lines) stops at.

    The regex skips every good line at C speed and stops at an odd one; the scan resumes
    after it, so a batch with a few odd lines costs a few matches, not one per line. ``None``
    when there are more than ``limit`` of them: then a whole-column check pays more.
    """
    text = joined + "\n"
    end = len(text)
    match = pattern.match
    odd: list[int] = []
    position = line = 0
    while True:
        stop = match(text, position).end()  # type: ignore[union-attr]  # (...)*+ always matches
        if stop == end:
            return odd
        line += text.count("\n", position, stop)
        if len(odd) == limit:
            return None
        odd.append(line)
        position = text.index("\n", stop) + 1
        line += 1


def _bad_amount_lines(joined: str) -> list[int]:
    """Indexes of the lines of ``joined`` (one amount per line) that are not valid amounts."""
    bad = _odd_lines(_AMOUNT_LINES_RE, joined, limit=None)
    assert bad is not None  # no limit: never None
    return bad


def _valid_cents(texts: Sequence[str], joined: str, *, two_decimals: bool = False) -> list[int]:
    """Cents of amounts that each match SPEC §2's pattern (``joined`` by newlines).

    ``two_decimals`` tells that ``joined`` is known to match ``_TWO_DECIMALS_RE`` already.
    """
    if two_decimals or _TWO_DECIMALS_RE.fullmatch(joined) is not None:
        return _two_decimal_cents(joined, ())  # the common shape ("-51.46")
    digits = _CENTS_DIGITS
    # "-0.5" -> "-0" + "50" -> -50: the sign stays with the whole part, even for zero.
    return [
        int(whole + digits[fraction])
        for whole, _, fraction in map(str.partition, texts, repeat("."))
    ]


def _check_ids(
    ids: Sequence[str], joined: str, bad: set[int]
) -> tuple[bool, bool, list[int] | None, list[int] | None]:
    """Check a column of ids (``joined`` by newlines), adding the indexes of bad ones to ``bad``.

    Returns whether every id is numeric and of one width (then they compare as texts as
    they do as ints); whether every id is numeric; and, when only a few ids are not numeric,
    their indexes (else ``None``); when only a few are not numeric ids of the first id's
    width (or else of the last one's), theirs (else ``None``). Those not in ``bad`` are
    valid ids of another shape.
    """
    # An id holding a line break is invalid (a control character) and adds a line.
    one_per_line = joined.count("\n") == len(ids) - 1
    odd_width = None
    if one_per_line:
        # One scan for the ids not of the first one's width (or, if that fails, the last
        # one's): usually none, or only bad rows' ids.
        odd_width = _odd_lines(_numeric_lines_of_width(len(ids[0])), joined, 4)
        if odd_width is None and len(ids[-1]) != len(ids[0]):
            odd_width = _odd_lines(_numeric_lines_of_width(len(ids[-1])), joined, 4)
        if odd_width == []:
            return True, True, [], []
        odd_ids: list[int] | None
        if odd_width is not None:
            odd_ids = [i for i in odd_width if _ONE_NUMERIC_ID_RE.fullmatch(ids[i]) is None]
        elif _NUMERIC_IDS_RE.fullmatch(joined) is not None:
            return False, True, [], None
        else:
            # A file of ids of another shape ("TX1") gives up on the few-odd scan at once.
            odd_ids = _odd_lines(_NUMERIC_ID_LINES_RE, joined, 4)
        if odd_ids is not None:
            bad.update(i for i in odd_ids if not _valid_id(ids[i]))
            return False, not odd_ids, odd_ids, odd_width
    if (
        not one_per_line
        or "" in ids
        or max(map(len, ids), default=0) > MAX_ID_LENGTH
        or not "".join(ids).isprintable()
    ):
        bad.update(i for i in _id_suspects(ids) if not _valid_id(ids[i]))
    return False, False, None, odd_width


def _numeric_lines_of_width(width: int) -> re.Pattern[str]:
    """Runs of lines that are each a numeric id of ``width`` digits (:func:`_odd_lines`)."""
    pattern = _NUMERIC_WIDTH_RES.get(width)
    if pattern is None:
        if not 0 < width <= _NUMERIC_ID_DIGITS:
            return _NO_LINES_RE
        first = r"\d" if width == 1 else rf"[1-9]\d{{{width - 1}}}"
        pattern = _NUMERIC_WIDTH_RES[width] = re.compile(rf"(?:{first}\n)*+", re.ASCII)
    return pattern


def _numeric_of_width(ids: Sequence[str], joined: str) -> bool:
    """Whether the ids (``joined`` by newlines, one per line) are numeric and of one width."""
    width = len(ids[0])
    if len(joined) != len(ids) * (width + 1) - 1:
        return False
    return _odd_lines(_numeric_lines_of_width(width), joined, 0) == []


def _line_of(joined: str, text: str) -> int:
    """Which line of ``joined`` is ``text``, or -1; every line and ``text`` are digits only.

    The lines are all of one width: a run of that many digits can only be a whole line.
    """
    width = joined.find("\n")
    if len(text) != (len(joined) if width < 0 else width):
        return -1
    found = joined.find(text)
    return found if found < 0 else found // (len(text) + 1)


def _two_decimal_cents(joined: str, bad: Collection[int]) -> list[int]:
    """Cents of a column of amounts (``joined`` by newlines), 0 for the rows in ``bad``.

    Every line not in ``bad`` has exactly two decimals: dropping every dot leaves cents.
    """
    texts = joined.replace(".", "").split("\n")
    for i in bad:
        texts[i] = "0"
    return list(map(int, texts))


def _columns(
    records: Sequence[Sequence[str]], width: int
) -> tuple[Sequence[Sequence[str]], Sequence[int], list[int]]:
    """The columns of the records with ``width`` fields, their positions, the others' positions."""
    if isinstance(records, Columns) and records.width == width:
        return records.columns, records.positions, list(records.odd)
    try:
        columns = list(zip(*records, strict=True))
    except ValueError:
        columns = []  # records of different lengths
    if len(columns) == width:
        return columns, range(len(records)), []
    right = list(map(eq, map(len, records), repeat(width)))
    positions = list(compress(range(len(records)), right))
    others = list(compress(range(len(records)), map(not_, right)))
    columns = list(zip(*compress(records, right), strict=True)) or [()] * width
    return columns, positions, others


def _id_suspects(ids: Sequence[str]) -> list[int]:
    """Positions of the ids the C-level checks cannot pass: empty, too long, not printable."""
    suspects = _positions(ids, "")
    if max(map(len, ids), default=0) > MAX_ID_LENGTH:
        suspects += [i for i, tx_id in enumerate(ids) if len(tx_id) > MAX_ID_LENGTH]
    if not "".join(ids).isprintable():
        suspects += compress(range(len(ids)), map(not_, map(str.isprintable, ids)))
    return suspects


def _lookup(
    cache: dict[str, _V], raw: Sequence[str], compute: Callable[[list[str]], list[_V]]
) -> list[_V]:
    """Cached values for a column: one C-level pass, then one ``compute`` call for the misses."""
    try:
        return list(map(cache.__getitem__, raw))
    except KeyError:
        pass
    values = list(map(cache.get, raw))
    if None in values:
        positions: list[int] = []
        position = values.index(None)
        try:
            while True:
                positions.append(position)
                position = values.index(None, position + 1)
        except ValueError:
            pass
        computed = compute([raw[p] for p in positions])
        for p, value in zip(positions, computed, strict=True):
            values[p] = value
    return values  # type: ignore[return-value]  # every None was replaced just above
