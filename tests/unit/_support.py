"""Shared helpers for the core's unit tests: chunked byte sources and a reference oracle.

The oracle is a deliberately small, row-at-a-time reading of SPEC §2-3 built only on the
standard library (``csv``, ``decimal``, ``re``, ``calendar``). It shares no code with
``stori_pipeline``: its value is that it is obviously right, not that it is fast.
"""

from __future__ import annotations

import asyncio
import calendar
import csv
import io
import re
import unicodedata
from collections.abc import AsyncIterator, Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from stori_pipeline import Rejection, summarize_stream

# Chunk sizes that exercise every boundary: 1 byte splits every multi-byte character, BOM and
# CRLF; odd small sizes land in the middle of records; a huge one is "the whole file at once".
CHUNK_SIZES = (1, 2, 3, 7, 64, 4096, 1 << 30)

CENT = Decimal("0.01")
TRIM = " \t"
ACCOUNT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
AMOUNT_RE = re.compile(r"[+-]?[0-9]{1,15}(\.[0-9]{1,2})?")
SHORT_DATE_RE = re.compile(r"([0-9]{1,2})/([0-9]{1,2})(?:/([0-9]{4}))?")
ISO_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
HEADER_NAMES = {
    "id": "id",
    "transactionid": "id",
    "date": "date",
    "transaction": "amount",
    "amount": "amount",
    "accountid": "account",
}


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    """Yield ``data`` in pieces of ``size`` bytes (the last one may be shorter)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def summarize_bytes(
    data: bytes, *, account: str | None = None, chunk_size: int = 1 << 30
) -> dict[str, Any]:
    """The ``summarize --json`` object the implementation produces for ``data``."""
    rejected: list[Rejection] = []

    async def run() -> dict[str, Any]:
        result = await summarize_stream(
            chunked(data, chunk_size), account=account, on_reject=rejected.append
        )
        return result.to_json(rejected)

    return asyncio.run(run())


# --- the oracle ------------------------------------------------------------------------------


def oracle_date(text: str) -> tuple[int | None, int] | None:
    """(year or None, month) of a valid SPEC date, else None."""
    text = text.strip(TRIM)
    short = SHORT_DATE_RE.fullmatch(text)
    iso = ISO_DATE_RE.fullmatch(text)
    if short:
        month, day = int(short[1]), int(short[2])
        year = int(short[3]) if short[3] is not None else None
    elif iso:
        year, month, day = int(iso[1]), int(iso[2]), int(iso[3])
    else:
        return None
    if year is not None and not 1900 <= year <= 2100:
        return None
    if not 1 <= month <= 12:
        return None
    # Without a year Feb 29 is allowed: measure against a leap year.
    days = calendar.monthrange(2000 if year is None else year, month)[1]
    if not 1 <= day <= days:
        return None
    return year, month


def oracle_amount(text: str) -> Decimal | None:
    """The amount of a valid SPEC amount, else None."""
    text = text.strip(TRIM)
    if not AMOUNT_RE.fullmatch(text):
        return None
    return Decimal(text)


def oracle_id_ok(text: str) -> bool:
    """SPEC §2's Id rule on an already trimmed id."""
    return 1 <= len(text) <= 64 and not any(unicodedata.category(c) == "Cc" for c in text)


def money(value: Decimal) -> str:
    """Two fractional digits, never ``-0.00``."""
    value = value.quantize(CENT, rounding=ROUND_HALF_UP)
    if value == 0:
        return "0.00"
    return f"{value:.2f}"


def flow_json(values: list[Decimal]) -> dict[str, Any]:
    """``{"count", "total", "average"}`` of a list of amounts."""
    total = sum(values, Decimal(0))
    return {
        "count": len(values),
        "total": money(total),
        "average": money(total / len(values)) if values else None,
    }


def summary_json(account: str, rows: list[tuple[int | None, int, Decimal]]) -> dict[str, Any]:
    """SPEC §3's summary of one account's accepted (year, month, amount) rows."""
    keys = sorted({(y, m) for y, m, _ in rows}, key=lambda k: (k[0] or 0, k[1]))
    months = []
    for year, month in keys:
        amounts = [a for y, m, a in rows if (y, m) == (year, month)]
        months.append(
            {
                "year": year,
                "month": month,
                "transactionCount": len(amounts),
                "credit": flow_json([a for a in amounts if a > 0]),
                "debit": flow_json([a for a in amounts if a < 0]),
            }
        )
    amounts = [a for _, _, a in rows]
    return {
        "accountId": account,
        "balance": money(sum(amounts, Decimal(0))),
        "transactionCount": len(amounts),
        "credit": flow_json([a for a in amounts if a > 0]),
        "debit": flow_json([a for a in amounts if a < 0]),
        "months": months,
    }


def _file_error(code: str) -> dict[str, Any]:
    return {"fileError": code}


def oracle(data: bytes, account: str | None = None) -> dict[str, Any]:
    """SPEC §2-3's ``summarize --json`` object for ``data`` (file errors: only ``fileError``)."""
    return oracle_with_rows(data, account)[0]


AcceptedRow = tuple[str, str, str, int | None, int, int, int]
"""(account, trimmed id, trimmed date, year, month, amount in cents, line) of an accepted row."""


def oracle_with_rows(  # noqa: C901, PLR0912, PLR0915 - one readable loop, like the SPEC table
    data: bytes, account: str | None = None
) -> tuple[dict[str, Any], list[AcceptedRow]]:
    """The oracle's JSON object and its accepted rows in file order."""
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next((record for record in reader if record), None)
    if header is None:
        return _file_error("empty_file"), []
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        meaning = HEADER_NAMES.get(name.strip().lower())
        if meaning is None:
            continue
        if meaning in columns:
            return _file_error("bad_header"), []
        columns[meaning] = index
    if not {"id", "date", "amount"} <= columns.keys():
        return _file_error("bad_header"), []
    if "account" not in columns and (account is None or not ACCOUNT_RE.fullmatch(account)):
        return _file_error("no_account"), []

    rejected: list[dict[str, Any]] = []
    accepted: dict[str, list[tuple[int | None, int, Decimal]]] = {}
    seen: set[tuple[str, str]] = set()
    rows: list[AcceptedRow] = []
    rows_read = 0
    for record in reader:
        if not record:
            continue
        rows_read += 1
        line = reader.line_num
        tx_id = record[columns["id"]].strip(TRIM) if columns["id"] < len(record) else ""

        def reject(code: str, line: int = line, tx_id: str = tx_id) -> None:
            rejected.append({"line": line, "id": tx_id, "code": code})

        if len(record) != len(header):
            reject("field_count")
            continue
        if any("\udc80" <= c <= "\udcff" for field in record for c in field):
            reject("invalid_encoding")
            continue
        if not oracle_id_ok(tx_id):
            reject("invalid_id")
            continue
        date = oracle_date(record[columns["date"]])
        if date is None:
            reject("invalid_date")
            continue
        amount = oracle_amount(record[columns["amount"]])
        if amount is None:
            reject("invalid_amount")
            continue
        if "account" in columns:
            row_account = record[columns["account"]].strip(TRIM)
            if not ACCOUNT_RE.fullmatch(row_account):
                reject("invalid_account")
                continue
        else:
            assert account is not None
            row_account = account
        if (row_account, tx_id) in seen:
            reject("duplicate_id")
            continue
        seen.add((row_account, tx_id))
        accepted.setdefault(row_account, []).append((date[0], date[1], amount))
        date_text = record[columns["date"]].strip(TRIM)
        cents = int(amount * 100)
        rows.append((row_account, tx_id, date_text, date[0], date[1], cents, line))
    result = {
        "rowsRead": rows_read,
        "rowsAccepted": rows_read - len(rejected),
        "rowsRejected": len(rejected),
        "accounts": [summary_json(a, accepted[a]) for a in sorted(accepted)],
        "rejected": rejected,
        "fileError": None,
    }
    return result, rows


# Rejected ids of rows too short or not decodable are not defined by SPEC: compare line and code.
_LOOSE_ID_CODES = frozenset({"field_count", "invalid_encoding"})


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with the rejected ids SPEC leaves open blanked out; file errors reduced."""
    if result.get("fileError") is not None:
        return {"fileError": result["fileError"]}
    out = dict(result)
    out["rejected"] = [
        {**r, "id": None} if r["code"] in _LOOSE_ID_CODES else r for r in result["rejected"]
    ]
    return out


def csv_bytes(rows: Iterable[Iterable[str]], *, terminator: str = "\n", bom: bool = False) -> bytes:
    """Rows written by the stdlib csv writer (minimal quoting), UTF-8 encoded."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=terminator)
    writer.writerows(rows)
    return ("\ufeff" if bom else "").encode() + buffer.getvalue().encode()


def summarize_every_chunking(data: bytes, *, account: str | None = None) -> dict[str, Any]:
    """Summarize ``data`` under every chunk size; all must agree. Returns the result."""
    results = {
        size: summarize_bytes(data, account=account, chunk_size=size) for size in CHUNK_SIZES
    }
    whole = results[CHUNK_SIZES[-1]]
    for size, result in results.items():
        assert result == whole, f"chunk size {size} disagrees with the whole file"
    return whole
