"""SPEC §2 field rules and rejection codes, one rule at a time, through the streaming core."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit._support import summarize_bytes, summarize_every_chunking

CHALLENGE = "Id,Date,Transaction\n"
GO = "TransactionId,Date,Amount,AccountId\n"
ACCOUNT = "AccountId123"


def one_row(row: str, *, header: str = CHALLENGE, account: str | None = ACCOUNT) -> dict[str, Any]:
    """Summarize a header and one data row (whole file at once)."""
    return summarize_bytes((header + row + "\n").encode(), account=account)


def code_of(row: str, **kwargs: Any) -> str | None:
    """The rejection code of a single row, or None when it was accepted."""
    out = one_row(row, **kwargs)
    assert out["fileError"] is None
    assert out["rowsRead"] == 1
    if out["rejected"]:
        (rejection,) = out["rejected"]
        assert out["rowsAccepted"] == 0
        assert out["rowsRejected"] == 1
        return str(rejection["code"])
    assert out["rowsAccepted"] == 1
    return None


# --- Id ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tx_id", "valid"),
    [
        ("1", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("   ", False),
        ("\t", False),
        (" \t x \t ", True),
        (" " + "a" * 64 + "\t", True),  # 64 after trimming
        ("a\x07b", False),  # BEL is Cc
        ("a\x85b", False),  # NEL (C1) is Cc
        ("a\x7fb", False),  # DEL is Cc
        ("a\x00b", False),
        ("a\x1bb", False),
        ("a\u00a0b", True),  # no-break space is Zs, not Cc
        ("\u00a0", True),  # not trimmed (only spaces and tabs are), and not Cc
        ("😀", True),
        ("ñandú-42", True),
        ("a\u200bb", True),  # zero-width space is Cf, not Cc
        ("😀" * 64, True),  # 64 characters, many more bytes
        ("😀" * 65, False),
        ("x y", True),
        ("a\ufffdb", True),  # a literal replacement character is valid UTF-8 text
    ],
)
def test_id_rule(tx_id: str, valid: bool) -> None:
    """Id: 1-64 characters after trimming spaces/tabs, no Unicode Cc character."""
    assert code_of(f'"{tx_id}",7/15,+1.00') == (None if valid else "invalid_id")


def test_id_with_embedded_newline_is_invalid() -> None:
    """A quoted Id containing a newline holds a Cc character: invalid_id."""
    assert code_of('"a\nb",7/15,+1.00') == "invalid_id"


def test_rejected_id_is_reported_trimmed() -> None:
    """The rejection names the row's trimmed id."""
    out = one_row("  abc\t,13/1,+1.00")
    assert out["rejected"] == [{"line": 2, "id": "abc", "code": "invalid_date"}]


# --- Date ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("7/15", (None, 7)),
        ("07/15", (None, 7)),
        ("12/31", (None, 12)),
        ("1/1", (None, 1)),
        ("2/29", (None, 2)),  # without a year Feb 29 is allowed
        ("7/15/2024", (2024, 7)),
        ("2/29/2024", (2024, 2)),
        ("2/29/2000", (2000, 2)),
        ("2000-02-29", (2000, 2)),
        ("2024-07-15", (2024, 7)),
        ("1900-01-01", (1900, 1)),
        ("2100-12-31", (2100, 12)),
        ("1/1/1900", (1900, 1)),
        ("12/31/2100", (2100, 12)),
        (" 7/15 ", (None, 7)),
        ("\t7/15/2024\t", (2024, 7)),
        ("  2024-07-15 ", (2024, 7)),
    ],
)
def test_valid_dates(date: str, expected: tuple[int | None, int]) -> None:
    """Valid dates are accepted and bucketed by (year, month), year null without a year."""
    out = one_row(f"1,{date},+1.00")
    assert out["rejected"] == []
    (account,) = out["accounts"]
    (month,) = account["months"]
    assert (month["year"], month["month"]) == expected


@pytest.mark.parametrize(
    "date",
    [
        "",
        " ",
        "0/15",
        "13/1",
        "7/0",
        "7/32",
        "4/31",
        "2/30",
        "2/29/2023",
        "2/29/1900",  # 1900 is not a leap year
        "2100-02-29",  # nor is 2100
        "2023-02-29",
        "1899-12-31",
        "2101-01-01",
        "12/31/1899",
        "1/1/2101",
        "7/15/24",
        "7/15/024",
        "7/15/02024",
        "007/15",
        "7/015",
        "7-15",
        "7.15",
        "15/7",
        "2024/07/15",
        "2024-7-15",
        "2024-07-5",
        "24-07-15",
        "2024-13-01",
        "2024-00-10",
        "2024-01-00",
        "\u0667/\u0661\u0665",  # Arabic-Indic digits
        "\uff17/\uff11\uff15",  # fullwidth digits
        "7/\uff115",
        "2024-07-15T00:00",
        "July 15",
        "7/15/",
        "/15",
        "7//15",
        "+7/15",
        "7 /15",
        "7/15\n",
    ],
)
def test_invalid_dates(date: str) -> None:
    """Dates outside M/D, MM/DD, M/D/YYYY, YYYY-MM-DD, non-existent days, years out of range."""
    assert code_of(f'1,"{date}",+1.00') == "invalid_date"


# --- Amount --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "cents_text"),
    [
        ("1", "1.00"),
        ("+1", "1.00"),
        ("-1", "-1.00"),
        ("0.5", "0.50"),
        ("-0.05", "-0.05"),
        ("+60.5", "60.50"),
        ("10.00", "10.00"),
        ("007", "7.00"),
        ("999999999999999", "999999999999999.00"),  # 15 digits
        ("-999999999999999.99", "-999999999999999.99"),
        (" 5 ", "5.00"),
        ("\t-5.25\t", "-5.25"),
    ],
)
def test_valid_amounts(amount: str, cents_text: str) -> None:
    """Valid amounts give the exact balance."""
    out = one_row(f'1,7/15,"{amount}"')
    assert out["rejected"] == []
    assert out["accounts"][0]["balance"] == cents_text


@pytest.mark.parametrize(
    "amount",
    [
        "",
        " ",
        "1.",
        ".5",
        "1.234",
        "1,000",
        "1,000.00",
        "$5",
        "5$",
        "1e3",
        "1E3",
        "--1",
        "+-1",
        "-+1",
        "++1",
        "- 1",
        "1 000",
        "\uff15",  # fullwidth digit
        "\u0665",  # Arabic-Indic digit
        "1234567890123456",  # 16 digits
        "0000000000000000",
        "1234567890123456.00",
        "NaN",
        "Infinity",
        "0x10",
        "1_000",
        "(5)",
        "5-",
        "1.2.3",
        "5\n",
    ],
)
def test_invalid_amounts(amount: str) -> None:
    r"""Amounts not matching ^[+-]?[0-9]{1,15}(\.[0-9]{1,2})?$ are invalid_amount."""
    assert code_of(f'1,7/15,"{amount}"') == "invalid_amount"


@pytest.mark.parametrize("zero", ["0", "-0", "+0", "0.00", "-0.00", "-0.0"])
def test_zero_amount_counts_only_in_balance_and_count(zero: str) -> None:
    """A zero amount counts in transactionCount and balance, in neither credit nor debit."""
    out = one_row(f"1,7/15,{zero}")
    (account,) = out["accounts"]
    assert account["transactionCount"] == 1
    assert account["balance"] == "0.00"
    assert account["credit"] == {"count": 0, "total": "0.00", "average": None}
    assert account["debit"] == {"count": 0, "total": "0.00", "average": None}
    (month,) = account["months"]
    assert month["transactionCount"] == 1
    assert month["credit"]["count"] == month["debit"]["count"] == 0


# --- AccountId -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "valid"),
    [
        ("Acc1", True),
        ("a_b-C9", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        (" ", False),
        (" Acc1\t", True),  # trimmed first
        ("Acc 1", False),
        ("Acc.1", False),
        ("Acc1!", False),
        ("Äcc1", False),
        ("\uff21cc1", False),  # fullwidth letter
        ("Acc/1", False),
    ],
)
def test_account_column_rule(account: str, valid: bool) -> None:
    """AccountId column values must match ^[A-Za-z0-9_-]{1,64}$ after trimming."""
    assert code_of(f'1,7/15,+1.00,"{account}"', header=GO, account=None) == (
        None if valid else "invalid_account"
    )


def test_account_column_value_is_trimmed_in_summary() -> None:
    """The account of a row is its trimmed AccountId."""
    out = one_row("1,7/15,+1.00, Acc1 ", header=GO, account=None)
    assert [a["accountId"] for a in out["accounts"]] == ["Acc1"]


def test_account_option_used_without_column() -> None:
    """Without an AccountId column, every row belongs to the --account account."""
    out = one_row("1,7/15,+1.00", account="Zed_9")
    assert [a["accountId"] for a in out["accounts"]] == ["Zed_9"]


def test_account_column_wins_over_option() -> None:
    """With an AccountId column the option is ignored."""
    out = one_row("1,7/15,+1.00,Acc1", header=GO, account="Other")
    assert [a["accountId"] for a in out["accounts"]] == ["Acc1"]


def test_invalid_account_option_ignored_with_column() -> None:
    """With an AccountId column even an invalid option is ignored (no file error)."""
    out = one_row("1,7/15,+1.00,Acc1", header=GO, account="not valid!")
    assert out["fileError"] is None
    assert [a["accountId"] for a in out["accounts"]] == ["Acc1"]


@pytest.mark.parametrize("account", [None, "", "bad account", "a" * 65, "Äcc"])
def test_no_account_is_a_file_error(account: str | None) -> None:
    """No account column and no (valid) account option: the whole file is no_account."""
    out = one_row("1,7/15,+1.00", account=account)
    assert out["fileError"] == "no_account"
    assert out["accounts"] == []


# --- check order ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "code"),
    [
        # field_count beats everything, including bad bytes, id, date, amount.
        (b'"",13/1,x,"bad acc",n,extra', "field_count"),
        (b'\xff,13/1,x,"bad acc",n,extra', "field_count"),
        (b"\xff,13/1,x", "field_count"),
        (b"1,7/15", "field_count"),
        # invalid_encoding beats id/date/amount/account, wherever the bad byte is.
        (b',13/1,x,"bad acc",\xff', "invalid_encoding"),
        (b'\xff,13/1,x,"bad acc",n', "invalid_encoding"),
        (b"1,7/15,+1,Acc1,n\xc3", "invalid_encoding"),
        (b"1,7/15,+1\xe2\x82,Acc1,n", "invalid_encoding"),
        # invalid_id beats date/amount/account.
        (b',13/1,x,"bad acc",n', "invalid_id"),
        # invalid_date beats amount/account.
        (b'1,13/1,x,"bad acc",n', "invalid_date"),
        # invalid_amount beats account.
        (b'1,7/15,x,"bad acc",n', "invalid_amount"),
        (b'1,7/15,+1,"bad acc",n', "invalid_account"),
        (b"1,7/15,+1,Acc1,n", None),
    ],
)
def test_check_order(row: bytes, code: str | None) -> None:
    """A row breaking several rules gets the first code in SPEC order."""
    header = b"TransactionId,Date,Amount,AccountId,Note\n"
    out = summarize_every_chunking(header + row + b"\n")
    assert out["fileError"] is None
    assert [r["code"] for r in out["rejected"]] == ([] if code is None else [code])


def test_duplicate_after_every_other_check() -> None:
    """duplicate_id is checked last: a duplicate id with a bad date is invalid_date."""
    data = GO + "1,7/15,+1,Acc1\n1,13/1,+1,Acc1\n1,7/15,x,Acc1\n1,7/15,+1,Acc1\n"
    out = summarize_bytes(data.encode())
    assert [(r["line"], r["code"]) for r in out["rejected"]] == [
        (3, "invalid_date"),
        (4, "invalid_amount"),
        (5, "duplicate_id"),
    ]


# --- duplicates ----------------------------------------------------------------------------


def test_duplicate_only_against_accepted_rows() -> None:
    """A rejected row's id does not block a later valid row with the same id."""
    data = CHALLENGE + "7,13/1,+1\n7,7/15,+2\n7,7/16,+3\n"
    out = summarize_bytes(data.encode(), account=ACCOUNT)
    assert out["rejected"] == [
        {"line": 2, "id": "7", "code": "invalid_date"},
        {"line": 4, "id": "7", "code": "duplicate_id"},
    ]
    assert out["accounts"][0]["balance"] == "2.00"


def test_duplicate_after_rejected_duplicate_still_duplicate() -> None:
    """Every later repeat of an accepted id is a duplicate, not only the second one."""
    data = CHALLENGE + "a,7/15,+1\na,7/15,+1\na,7/15,+1\n"
    out = summarize_bytes(data.encode(), account=ACCOUNT)
    assert [(r["line"], r["code"]) for r in out["rejected"]] == [
        (3, "duplicate_id"),
        (4, "duplicate_id"),
    ]


def test_duplicates_are_per_account() -> None:
    """The same id in two accounts is two transactions; repeated within one it is not."""
    data = GO + "1,7/15,+1,AccA\n1,7/15,+2,AccB\n1,7/15,+4,AccA\n"
    out = summarize_bytes(data.encode())
    assert [(a["accountId"], a["balance"]) for a in out["accounts"]] == [
        ("AccA", "1.00"),
        ("AccB", "2.00"),
    ]
    assert out["rejected"] == [{"line": 4, "id": "1", "code": "duplicate_id"}]


def test_duplicate_compares_trimmed_ids() -> None:
    """Ids are trimmed before the duplicate check (' 5' repeats '5')."""
    data = CHALLENGE + "5,7/15,+1\n 5\t,7/15,+1\n"
    out = summarize_bytes(data.encode(), account=ACCOUNT)
    assert [r["code"] for r in out["rejected"]] == ["duplicate_id"]


def test_duplicate_ids_are_case_sensitive() -> None:
    """'a' and 'A' are different ids."""
    data = CHALLENGE + "a,7/15,+1\nA,7/15,+1\n"
    out = summarize_bytes(data.encode(), account=ACCOUNT)
    assert out["rejected"] == []


def test_duplicate_across_accounts_with_trimmed_account() -> None:
    """The account in the duplicate key is the trimmed AccountId."""
    data = GO + "1,7/15,+1,AccA\n1,7/15,+1, AccA \n"
    out = summarize_bytes(data.encode())
    assert [r["code"] for r in out["rejected"]] == ["duplicate_id"]


# --- encoding errors -----------------------------------------------------------------------


def test_invalid_utf8_rejects_only_that_row() -> None:
    """Undecodable bytes make one row invalid_encoding; its neighbours are fine."""
    data = CHALLENGE.encode() + b"1,7/15,+1\n2,7/15,+2\xff\n3,7/15,+4\n"
    out = summarize_every_chunking(data, account=ACCOUNT)
    assert [(r["line"], r["code"]) for r in out["rejected"]] == [(3, "invalid_encoding")]
    assert out["rowsRead"] == 3
    assert out["accounts"][0]["balance"] == "5.00"


def test_truncated_multibyte_sequence_at_end_of_file() -> None:
    """A file ending in half a UTF-8 character rejects that last row only."""
    data = CHALLENGE.encode() + b"1,7/15,+1\n2,7/15,+2,\xc3"
    out = summarize_every_chunking(data, account=ACCOUNT)
    assert [(r["line"], r["code"]) for r in out["rejected"]] == [(3, "field_count")]
    data = CHALLENGE.encode() + b"1,7/15,+1\n2,7/15,+2\xc3"
    out = summarize_every_chunking(data, account=ACCOUNT)
    assert [(r["line"], r["code"]) for r in out["rejected"]] == [(3, "invalid_encoding")]


def test_invalid_utf8_in_short_row_is_field_count() -> None:
    """A row with bad bytes and the wrong field count is field_count (checked first)."""
    data = CHALLENGE.encode() + b"1,7/15\xff\n"
    out = summarize_every_chunking(data, account=ACCOUNT)
    assert [r["code"] for r in out["rejected"]] == ["field_count"]


def test_surrogate_encoded_bytes_are_invalid() -> None:
    """CESU/surrogate byte sequences (ED A0 80) are not valid UTF-8."""
    data = CHALLENGE.encode() + b"a\xed\xa0\x80,7/15,+1\n"
    out = summarize_every_chunking(data, account=ACCOUNT)
    assert [r["code"] for r in out["rejected"]] == ["invalid_encoding"]


def test_overlong_encoding_is_invalid() -> None:
    """An overlong encoding of '/' (C0 AF) is not valid UTF-8."""
    data = CHALLENGE.encode() + b"a,7\xc0\xaf15,+1\n"
    out = summarize_every_chunking(data, account=ACCOUNT)
    assert [r["code"] for r in out["rejected"]] == ["invalid_encoding"]


def test_multibyte_ids_survive_every_chunk_split() -> None:
    """Valid multi-byte UTF-8 split across chunks decodes as one character."""
    data = (CHALLENGE + "😀ñ€,7/15,+1\n中文,7/16,-2\n").encode()
    out = summarize_every_chunking(data, account=ACCOUNT)
    assert out["rejected"] == []
    assert out["accounts"][0]["balance"] == "-1.00"


def test_last_record_without_newline_keeps_its_line_number() -> None:
    """A final record with no line terminator still ends on its own physical line (csv's count)."""
    data = CHALLENGE.encode() + b"1,7/15,+1\n2,13/1,+2"
    out = summarize_every_chunking(data, account=ACCOUNT)
    assert out["rejected"] == [{"line": 3, "id": "2", "code": "invalid_date"}]


@pytest.mark.parametrize(
    ("tail", "line"),
    [
        (b'3,7/15,"5\n', 4),  # the text ends inside an open quote, right after a line break
        (b'3,7/15,"5\n"\n', 5),  # the same field, closed, then the record's own line break
        (b'3,7/15,"5\r', 4),
    ],
)
def test_line_of_a_last_record_cut_inside_its_quote(tail: bytes, line: int) -> None:
    """A truncated upload ending inside a quoted field: the line break in it ends the file.

    The multi-line record before it makes the batch count lines from the fields, where the
    last line break of an open quote must not count as one more line (csv's count).
    """
    data = CHALLENGE.encode() + b'1,7/15,"multi\nline"\n' + tail
    out = summarize_every_chunking(data, account=ACCOUNT)
    lines = [(r["line"], r["code"]) for r in out["rejected"]]
    assert lines == [(3, "invalid_amount"), (line, "invalid_amount")]


def test_header_past_the_csv_limit_is_malformed_not_a_traceback() -> None:
    """An unterminated quote swallowing the header is malformed_csv, reported at its line."""
    out = summarize_bytes(b'\n"' + b"x" * 140_000, account=ACCOUNT, chunk_size=4096)
    assert out["fileError"] == "malformed_csv"
    assert out["rowsRead"] == 0


def test_field_past_the_csv_limit_rejects_the_file_from_there() -> None:
    """A 200,000-character field is malformed_csv at its line; rows before it were read.

    The decision (README, "Decisions"): past the csv module's field limit the parser cannot
    resynchronise, so no summary of the partial file is given and nothing raises.
    """
    data = CHALLENGE.encode() + b"a,7/15,5\n" + b"i" * 200_000 + b",7/15,1\nb,7/15,2\n"
    out = summarize_bytes(data, account=ACCOUNT, chunk_size=65536)
    assert out["fileError"] == "malformed_csv"
    assert out["rowsRead"] == 1
    assert out["accounts"] == []
