"""Header resolution and row validation (SPEC §2): pure, synchronous, no I/O.

:class:`RowValidator` is the hot path of the whole system. It takes records in batches (one
Python frame per batch, not per row) and keeps small bounded caches keyed on the *raw* field
text, because dates, amounts and account ids repeat a great deal in real files: a cache hit
replaces trimming, a regex match and the conversion with one dict lookup.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from enum import StrEnum
from itertools import repeat
from typing import NamedTuple, TypeVar

from stori_pipeline.errors import FileRejectedError
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
_AMOUNTS_RE = re.compile(
    r"(?:[+-]?[0-9]{1,15}(?:\.[0-9]{1,2})?\n)*[+-]?[0-9]{1,15}(?:\.[0-9]{1,2})?"
)
# Every amount of the column with exactly two decimals, the shape of real statements.
_TWO_DECIMALS_RE = re.compile(r"(?:[+-]?[0-9]{1,15}\.[0-9]{2}\n)*[+-]?[0-9]{1,15}\.[0-9]{2}")
# The digits an amount's fraction contributes to its cents: "" -> "00", "5" -> "50", "05" -> "05".
_CENTS_DIGITS = {
    "": "00",
    **{d: d + "0" for d in "0123456789"},
    **{a + b: a + b for a in "0123456789" for b in "0123456789"},
}
_ACCOUNT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
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
# Below this many records, halving a stretch that holds a bad row costs more than it saves.
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
            raise FileRejectedError(
                FileErrorCode.BAD_HEADER,
                f"columns {found[field] + 1} and {position + 1} both mean {field!r}",
            )
        found[field] = position
    missing = [field for field in _REQUIRED if field not in found]
    if missing:
        expected = " / ".join(_ALIASES[missing[0]])
        raise FileRejectedError(
            FileErrorCode.BAD_HEADER,
            f"missing required column {missing[0]!r} (one of: {expected}, any case)",
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
        self._on_reject = on_reject
        self._dates: dict[str, int] = {}
        self._amounts: dict[str, int] = {}
        # Raw account text -> the ledger's account key (or _BAD_ACCOUNT), and account key ->
        # the prefix that makes an id unique across accounts in ``_seen``.
        self._account_keys: dict[str, int] = {}
        self._prefixes: dict[int, str] = {}
        # Accepted ids (prefixed by their account when the file names accounts): the only
        # state that grows with the file (SPEC §2). A dict of str -> None, not a set:
        # CPython GC-tracks every set, and each full collection walked a million ids (a
        # third of the run time); a dict holding only strings is never tracked.
        self._seen: dict[str, None] = {}
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

    def _amounts_of(self, raws: Sequence[str]) -> list[int]:
        """Convert a column of amounts: one regex over the joined column, then C-level maps."""
        joined = "\n".join(raws)
        texts: Sequence[str] = raws
        if " " in joined or "\t" in joined:
            texts = list(map(str.strip, raws, repeat(_TRIM)))
            joined = "\n".join(texts)
        # A field holding a newline would add a line and could pass the joined match.
        if joined.count("\n") != len(texts) - 1:
            return list(map(self._amount, raws))
        if _TWO_DECIMALS_RE.fullmatch(joined) is not None:
            # The common shape ("-51.46"): dropping every dot leaves each amount in cents.
            return list(map(int, joined.replace(".", "").split("\n")))
        if _AMOUNTS_RE.fullmatch(joined) is None:
            return list(map(self._amount, raws))
        digits = _CENTS_DIGITS
        # "-0.5" -> "-0" + "50" -> -50: the sign stays with the whole part, even for zero.
        return [
            int(whole + digits[fraction])
            for whole, _, fraction in map(str.partition, texts, repeat("."))
        ]

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

    def feed(
        self,
        records: Sequence[Sequence[str]],
        lines: Sequence[int],
        *,
        collect: bool = True,
    ) -> list[Transaction]:
        """Validate one batch of non-blank records; return the accepted ones when ``collect``.

        Clean stretches of rows take the column-wise path; a stretch holding any row that
        would be rejected is halved until the row-at-a-time path takes over for a few rows.
        Both paths apply the same rules to the same state, in file order.
        """
        accepted: list[Transaction] = []
        self.rows_read += len(records)
        self._feed(records, lines, collect, accepted)
        self.rows_accepted = self.rows_read - self.rows_rejected
        return accepted

    def _feed(
        self,
        records: Sequence[Sequence[str]],
        lines: Sequence[int],
        collect: bool,
        accepted: list[Transaction],
    ) -> None:
        if len(records) <= _ROW_AT_A_TIME or self.check_encoding:
            self._feed_rows(records, lines, collect, accepted)
        elif not self._feed_columns(records, lines, collect, accepted):
            half = len(records) // 2
            self._feed(records[:half], lines[:half], collect, accepted)
            self._feed(records[half:], lines[half:], collect, accepted)

    def _feed_columns(  # noqa: PLR0911 - a sequence of cheap all-or-nothing checks
        self,
        records: Sequence[Sequence[str]],
        lines: Sequence[int],
        collect: bool,
        accepted: list[Transaction],
    ) -> bool:
        """Accept every record of a clean stretch at C speed, or change nothing and say so.

        Each check runs over a whole column with ``map``/``zip``/``set`` (loops in C). Caches,
        and the ledger's list of account names, may fill on the way (an account without
        buckets has no summary); the seen ids and the buckets change only once every row has
        passed.
        """
        width, id_at, date_at, amount_at, account_at = self.columns
        lengths = set(map(len, records))
        if len(lengths) != 1 or width not in lengths:
            return False
        columns = list(zip(*records, strict=True))
        ids: Sequence[str] = columns[id_at]
        joined = "".join(ids)
        if " " in joined or "\t" in joined:
            ids = list(map(str.strip, ids, repeat(_TRIM)))
            joined = "".join(ids)
        if "" in ids or max(map(len, ids)) > MAX_ID_LENGTH or not joined.isprintable():
            return False
        keys = _lookup(self._dates, columns[date_at], self._dates_of)
        if _BAD_DATE in keys:
            return False
        # Amounts rarely repeat enough for a cache to pay: convert the column in bulk.
        cents = self._amounts_of(columns[amount_at])
        if _BAD_AMOUNT in cents:
            return False
        account_keys: Iterable[int]
        if account_at is None:
            # The default account is the ledger's first, so its key is 0: key | 0 == key.
            account_keys, bucket_keys = repeat(self._default_key), keys
            seen_keys: Sequence[str] = ids
        else:
            account_keys = _lookup(self._account_keys, columns[account_at], self._account_keys_of)
            if _BAD_ACCOUNT in account_keys:
                return False
            bucket_keys = list(map(int.__or__, account_keys, keys))
            seen_keys = list(map(str.__add__, map(self._prefixes.__getitem__, account_keys), ids))
        fresh = dict.fromkeys(seen_keys)
        if len(fresh) != len(seen_keys) or not self._seen.keys().isdisjoint(fresh):
            return False
        self._seen.update(fresh)
        add_to_buckets(self.ledger.buckets, bucket_keys, cents)
        if collect:
            names = self.ledger.accounts
            shift = self.ledger.ACCOUNT_SHIFT
            dates = map(str.strip, columns[date_at], repeat(_TRIM))
            accepted.extend(
                Transaction(
                    names[a >> shift], tx_id, date, key // 16 or None, key % 16, amount, line
                )
                for a, tx_id, date, key, amount, line in zip(
                    account_keys, ids, dates, keys, cents, lines, strict=False
                )
            )
        return True

    def _feed_rows(  # noqa: C901, PLR0912 - one frame per batch is the point (module doc)
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
        seen, buckets, names = self._seen, self.ledger.buckets, self.ledger.accounts
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
            seen_key = tx_id
            if account_at is not None:
                account_key = account_keys.get(record[account_at], _BAD_ACCOUNT - 1)
                if account_key == _BAD_ACCOUNT - 1:
                    account_key = self._account_key(record[account_at])
                if account_key == _BAD_ACCOUNT:
                    reject(line, record, RejectCode.INVALID_ACCOUNT)
                    continue
                account = names[account_key >> shift]
                seen_key = self._prefixes[account_key] + tx_id
            if seen_key in seen:
                reject(line, record, RejectCode.DUPLICATE_ID)
                continue
            seen[seen_key] = None
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


def _lookup(
    cache: dict[str, _V], raw: Sequence[str], compute: Callable[[list[str]], list[_V]]
) -> list[_V]:
    """Cached values for a column: one C-level pass, then one ``compute`` call for the misses."""
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
