"""Laws of the summary (hypothesis) and the oracle: the implementation equals a tiny reference.

The oracle in ``_support`` reads SPEC §2-3 row at a time with the standard library. Files
are generated to mix valid rows with every kind of invalid one, duplicates, blank lines,
quoting, CRLF and BOM, and are fed in chunks of many sizes.
"""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stori_pipeline import AccountSummary, summarize_stream
from tests.unit._support import (
    CHUNK_SIZES,
    chunked,
    comparable,
    oracle,
    summarize_bytes,
)

VALID_IDS = [
    "1",
    "2",
    "3",
    # Numeric ids are keyed by their number in the duplicate check: none of these may equal
    # "1" (or each other) by value.
    "0",
    "01",
    "00",
    "+1",
    "1_0",
    "10",
    "\u0661",  # ARABIC-INDIC DIGIT ONE
    "123456789012345",
    "1234567890123456",
    "a",
    "A",
    " 1",
    "1 ",
    "\t2",
    "x,y",
    'q"q',
    "ñ",
    "😀",
    "\u00a0",
    "i" * 64,
]
INVALID_IDS = ["", " ", "i" * 65, "a\x07", "\x85", "b\x7f", "c\nd", "e\r\nf"]
VALID_DATES = [
    "7/15",
    "07/15",
    "2/29",
    "12/31",
    "1/1/1900",
    "2/29/2024",
    "2024-07-15",
    "2100-12-31",
    " 8/2\t",
    "3/3/2023",
    "2000-02-29",
]
INVALID_DATES = [
    "",
    "13/1",
    "2/30",
    "2/29/2023",
    "7/15/24",
    "2101-01-01",
    "\u0667/1",
    "7-15",
    "1899-12-31",
    "2100-02-29",
    "7/15\n",
]
VALID_AMOUNTS = [
    "1",
    "+1",
    "-1",
    "0",
    "-0",
    "0.00",
    "60.5",
    "-10.30",
    "+10",
    "999999999999999.99",
    " -2.5 ",
    "0.01",
    "-0.01",
    "-0.13",
    "0.12",
]
INVALID_AMOUNTS = ["", "1.", ".5", "1.234", "1,000", "$5", "1e3", "--1", "+-1", "\uff15", "9" * 16]
VALID_ACCOUNTS = ["Acc1", "Acc2", "acc1", " Acc1 ", "a_b-c", "Z" * 64]
INVALID_ACCOUNTS = ["", "bad acc", "Z" * 65, "Äcc", "a.b"]
MEMOS = [
    "",
    "x",
    "a,b",
    'say "hi"',
    "multi\nline",
    "crlf\r\nline",
    "cr\rline",
    "ends\r",
    "\r\r\n",
    "😀",
    "\n",
]
BAD_BYTES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80", b"\xe2\x82"]
# Stands in for undecodable bytes while the row is written as text; replaced after encoding.
BAD = "\u2063BAD\u2063"

ALIASES = {
    "id": ["Id", "TransactionId", "id", "TRANSACTIONID", " Id "],
    "date": ["Date", "date", "\tDATE"],
    "amount": ["Transaction", "Amount", "amount", " transaction"],
    "account": ["AccountId", "accountid", "ACCOUNTID "],
    "memo": ["Memo", "Note", "Id2"],
}
VALID = {"id": VALID_IDS, "date": VALID_DATES, "amount": VALID_AMOUNTS, "account": VALID_ACCOUNTS}
INVALID = {
    "id": INVALID_IDS,
    "date": INVALID_DATES,
    "amount": INVALID_AMOUNTS,
    "account": INVALID_ACCOUNTS,
}


@dataclass(frozen=True)
class GeneratedFile:
    """A generated file and the account option to summarize it with."""

    data: bytes
    account: str | None


@st.composite
def csv_files(draw: st.DrawFn, *, trailing_newline: bool = True) -> GeneratedFile:
    """A file mixing valid rows with every kind of invalid one."""
    has_account = draw(st.booleans())
    meanings = ["id", "date", "amount"] + (["account"] if has_account else [])
    meanings += ["memo"] * draw(st.integers(0, 2))
    meanings = draw(st.permutations(meanings))
    header = [draw(st.sampled_from(ALIASES[m])) for m in meanings]
    terminator = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    quote_all = draw(st.booleans())
    bom = draw(st.booleans())
    account = "AccountId123" if not has_account else draw(st.sampled_from([None, "Acc1", "x!"]))

    def write(fields: list[str]) -> str:
        buffer = io.StringIO()
        csv.writer(
            buffer,
            lineterminator=terminator,
            quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL,
        ).writerow(fields)
        return buffer.getvalue()

    lines = [write(header)]
    for _ in range(draw(st.integers(0, 40))):
        kind = draw(
            st.sampled_from(["valid"] * 6 + ["invalid", "count", "encoding", "blank", "dup"])
        )
        if kind == "blank":
            lines.append(terminator)
            continue
        fields = {m: draw(st.sampled_from(VALID[m])) for m in meanings if m in VALID}
        if kind == "invalid":
            broken = draw(st.sampled_from(sorted(fields)))
            fields[broken] = draw(st.sampled_from(INVALID[broken]))
        row = [fields[m] if m in fields else draw(st.sampled_from(MEMOS)) for m in meanings]
        if kind == "count":
            row = row[:-1] if draw(st.booleans()) else [*row, draw(st.sampled_from(MEMOS))]
        elif kind == "encoding":
            where = draw(st.integers(0, len(row) - 1))
            row[where] = draw(st.sampled_from(["", "x"])) + BAD + row[where]
        lines.append(write(row))
        if kind == "dup":
            lines.append(lines[-1])
    text = ("\ufeff" if bom else "") + "".join(lines)
    if not trailing_newline:
        text = text.rstrip("\r\n")
    data = text.encode()
    bad = draw(st.sampled_from(BAD_BYTES))
    return GeneratedFile(data.replace(BAD.encode(), bad), account)


def implementation(data: bytes, account: str | None, chunk_size: int) -> dict[str, Any]:
    """What the implementation reports for the file (comparable form)."""
    return comparable(summarize_bytes(data, account=account, chunk_size=chunk_size))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=csv_files(), chunk_size=st.sampled_from(CHUNK_SIZES))
def test_oracle_agrees_on_generated_files(file: GeneratedFile, chunk_size: int) -> None:
    """On any mixed file, `summarize --json` equals the reference reading of SPEC §2-3."""
    expected = comparable(oracle(file.data, file.account))
    assert implementation(file.data, file.account, chunk_size) == expected


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=csv_files(trailing_newline=False), chunk_size=st.sampled_from(CHUNK_SIZES))
def test_oracle_agrees_without_final_newline(file: GeneratedFile, chunk_size: int) -> None:
    """Files that end without a line terminator are read like any other (same lines)."""
    expected = comparable(oracle(file.data, file.account))
    assert implementation(file.data, file.account, chunk_size) == expected


# --- laws of the summary -------------------------------------------------------------------

valid_rows = st.lists(
    st.tuples(
        st.sampled_from(VALID_DATES),
        st.sampled_from(VALID_AMOUNTS),
        st.sampled_from(["Acc1", "Acc2", "b_3"]),
    ),
    max_size=60,
)
nonempty_rows = st.lists(
    st.tuples(
        st.sampled_from(VALID_DATES), st.sampled_from(VALID_AMOUNTS), st.sampled_from(["Acc1"])
    ),
    min_size=1,
    max_size=30,
)


def go_file(rows: list[tuple[str, str, str]], first_id: int = 0) -> bytes:
    """A Go-style file with distinct ids."""
    body = "".join(
        f'{first_id + i},"{date}","{amount}",{account}\n'
        for i, (date, amount, account) in enumerate(rows)
    )
    return ("TransactionId,Date,Amount,AccountId\n" + body).encode()


def summaries(data: bytes) -> tuple[AccountSummary, ...]:
    """The implementation's AccountSummary values for a file."""
    return asyncio.run(summarize_stream(chunked(data, 1 << 30))).accounts


def money_sum(values: list[str]) -> Decimal:
    """Sum of money strings."""
    return sum((Decimal(v) for v in values), Decimal(0))


@settings(max_examples=150, deadline=None)
@given(rows=valid_rows)
def test_balance_equals_months_and_flows(rows: list[tuple[str, str, str]]) -> None:
    """Balance == sum of months == credit + debit; counts add up the same way."""
    out = summarize_bytes(go_file(rows))
    assert out["rowsAccepted"] == len(rows)
    for account in out["accounts"]:
        months = account["months"]
        balance = Decimal(account["balance"])
        flows = Decimal(account["credit"]["total"]) + Decimal(account["debit"]["total"])
        assert balance == flows
        assert balance == money_sum([m["credit"]["total"] for m in months]) + money_sum(
            [m["debit"]["total"] for m in months]
        )
        assert account["transactionCount"] == sum(m["transactionCount"] for m in months)
        assert account["credit"]["count"] == sum(m["credit"]["count"] for m in months)
        assert account["debit"]["count"] == sum(m["debit"]["count"] for m in months)
        assert Decimal(account["debit"]["total"]) <= 0 <= Decimal(account["credit"]["total"])
        for month in months:
            assert month["credit"]["count"] + month["debit"]["count"] <= month["transactionCount"]
    assert sum(a["transactionCount"] for a in out["accounts"]) == len(rows)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), file=csv_files())
def test_row_order_does_not_change_the_summary(data: st.DataObject, file: GeneratedFile) -> None:
    """Permuting records with distinct ids leaves accounts and counts unchanged."""
    text = file.data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    records = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    header, body = records[0], records[1:]
    for index, record in enumerate(body):
        record.insert(0, f"uniq{index}")  # distinct ids; the original id becomes a memo
    ids = {"id", "transactionid"}
    header = ["Id", *[f"c{i}" if h.strip().lower() in ids else h for i, h in enumerate(header)]]

    def encode(rows: list[list[str]]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
        return buffer.getvalue().encode("utf-8", "surrogateescape")

    account = file.account
    shuffled = data.draw(st.permutations(body))
    original = summarize_bytes(encode(body), account=account)
    permuted = summarize_bytes(encode(list(shuffled)), account=account)
    assert permuted["accounts"] == original["accounts"]
    for key in ("rowsRead", "rowsAccepted", "rowsRejected", "fileError"):
        assert permuted[key] == original[key]
    assert sorted(r["code"] for r in permuted["rejected"]) == sorted(
        r["code"] for r in original["rejected"]
    )


@settings(max_examples=150, deadline=None)
@given(rows=valid_rows, cut=st.integers(0, 60))
def test_merge_of_halves_equals_whole(rows: list[tuple[str, str, str]], cut: int) -> None:
    """Summaries of two halves of a file merge into the summary of the whole file."""
    cut = min(cut, len(rows))
    whole = {s.account_id: s for s in summaries(go_file(rows))}
    merged = {s.account_id: s for s in summaries(go_file(rows[:cut]))}
    for part in summaries(go_file(rows[cut:], first_id=cut)):
        previous = merged.get(part.account_id)
        merged[part.account_id] = part if previous is None else previous.merge(part)
    assert merged == whole
    assert {k: v.to_json() for k, v in merged.items()} == {k: v.to_json() for k, v in whole.items()}


@settings(max_examples=100, deadline=None)
@given(a=nonempty_rows, b=nonempty_rows, c=nonempty_rows)
def test_merge_is_associative_and_commutative(
    a: list[tuple[str, str, str]], b: list[tuple[str, str, str]], c: list[tuple[str, str, str]]
) -> None:
    """Merge is associative and commutative (for one account)."""

    def one(rows: list[tuple[str, str, str]]) -> AccountSummary:
        rows = [(d, amount, "Acc1") for d, amount, _ in rows] or [("7/15", "0", "Acc1")]
        (summary,) = summaries(go_file(rows))
        return summary

    x, y, z = one(a), one(b), one(c)
    assert x.merge(y) == y.merge(x)
    assert x.merge(y).merge(z) == x.merge(y.merge(z))
    assert x.merge(y).to_json() == y.merge(x).to_json()
    assert x.merge(y) == one(a + b)
    assert x.merge(y).merge(z) == one(a + b + c)


@settings(max_examples=150, deadline=None)
@given(rows=valid_rows)
def test_json_round_trip(rows: list[tuple[str, str, str]]) -> None:
    """AccountSummary.from_json(s.to_json()) == s, and its JSON is stable."""
    for summary in summaries(go_file(rows)):
        again = AccountSummary.from_json(summary.to_json())
        assert again == summary
        assert again.to_json() == summary.to_json()
