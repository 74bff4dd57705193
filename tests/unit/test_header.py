"""SPEC §2 header resolution and file-level rejections."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit._support import summarize_every_chunking

ROW_BY_MEANING = {"id": "t1", "date": "7/15", "amount": "-2.50", "account": "Acc1"}


def run_with_header(names: list[str], meanings: list[str | None]) -> dict[str, Any]:
    """One data row laid out under ``names``; ``meanings`` says what each column holds."""
    row = [ROW_BY_MEANING[m] if m else "junk" for m in meanings]
    data = (",".join(names) + "\n" + ",".join(row) + "\n").encode()
    return summarize_every_chunking(data, account="Fallback")


@pytest.mark.parametrize(
    ("names", "meanings"),
    [
        (["Id", "Date", "Transaction"], ["id", "date", "amount"]),
        (["TransactionId", "Date", "Amount", "AccountId"], ["id", "date", "amount", "account"]),
        (["id", "date", "transaction"], ["id", "date", "amount"]),
        (["ID", "DATE", "AMOUNT"], ["id", "date", "amount"]),
        (["tRaNsAcTiOnId", "dAtE", "aMoUnT", "aCcOuNtId"], ["id", "date", "amount", "account"]),
        ([" Id ", "\tDate\t", "  Transaction"], ["id", "date", "amount"]),
        (["AccountId", "Amount", "Date", "TransactionId"], ["account", "amount", "date", "id"]),
        (["Transaction", "Id", "Date"], ["amount", "id", "date"]),
        (
            ["Memo", "Id", "Note", "Date", "Transaction", "X"],
            [None, "id", None, "date", "amount", None],
        ),
        (
            ["Note", "Id", "Note", "Date", "Note", "Transaction"],
            [None, "id", None, "date", None, "amount"],
        ),
        (["", "Id", "Date", "Transaction", ""], [None, "id", "date", "amount", None]),
        (["Id", "Date", "Transaction", "Account"], ["id", "date", "amount", None]),
        (["Id", "Date", "Transaction", "Account Id"], ["id", "date", "amount", None]),
    ],
)
def test_header_variants_resolve(names: list[str], meanings: list[str | None]) -> None:
    """Aliases, any case, surrounding white space, any order; unknown columns are ignored."""
    out = run_with_header(names, meanings)
    assert out["fileError"] is None
    assert out["rejected"] == []
    (account,) = out["accounts"]
    expected_account = "Acc1" if "account" in meanings else "Fallback"
    assert account["accountId"] == expected_account
    assert account["balance"] == "-2.50"
    assert account["months"][0]["month"] == 7


@pytest.mark.parametrize(
    "names",
    [
        ["Date", "Transaction"],  # no id
        ["Id", "Transaction"],  # no date
        ["Id", "Date"],  # no amount
        ["Id", "Date", "Transactions"],  # near miss is unknown, so amount is missing
        ["Identifier", "Date", "Amount"],
        ["Id", "TransactionId", "Date", "Transaction"],  # two ids
        ["Id", "Date", "Date", "Transaction"],  # date twice
        ["Id", "Date", "Transaction", "Amount"],  # two amounts
        ["Id", "Date", "Amount", " amount "],  # the same alias twice, differently written
        ["TransactionId", "Date", "Amount", "AccountId", "accountid"],  # two accounts
        ["Id;Date;Transaction"],  # wrong delimiter
    ],
)
def test_bad_header(names: list[str]) -> None:
    """A required column absent or two columns meaning the same thing: bad_header."""
    data = (",".join(names) + "\n" + ",".join(["1"] * len(names)) + "\n").encode()
    out = summarize_every_chunking(data, account="Acc1")
    assert out["fileError"] == "bad_header"
    assert out["accounts"] == []


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n",
        b"\n\n\n",
        b"\r\n\r\n",
        b"\xef\xbb\xbf",
        b"\xef\xbb\xbf\n",
        b"\xef\xbb\xbf\r\n\r\n",
    ],
)
def test_empty_file(data: bytes) -> None:
    """No header record at all (nothing, blank lines, a BOM): empty_file."""
    out = summarize_every_chunking(data, account="Acc1")
    assert out["fileError"] == "empty_file"
    assert out["accounts"] == []
    assert out["rowsRead"] == 0


@pytest.mark.parametrize(
    "data",
    [
        b"Id,Date,Transaction",
        b"Id,Date,Transaction\n",
        b"Id,Date,Transaction\r\n\r\n\n",
        b"\xef\xbb\xbfTransactionId,Date,Amount,AccountId\r\n",
        b"\n\nId,Date,Transaction\n\n",
    ],
)
def test_header_only_is_not_an_error(data: bytes) -> None:
    """A header and no data: no accounts, nothing rejected, no file error."""
    out = summarize_every_chunking(data, account="Acc1")
    assert out == {
        "rowsRead": 0,
        "rowsAccepted": 0,
        "rowsRejected": 0,
        "accounts": [],
        "rejected": [],
        "fileError": None,
    }


def test_bom_before_header_is_not_part_of_first_name() -> None:
    """A UTF-8 BOM is dropped, so the first column still reads 'Id'."""
    data = b"\xef\xbb\xbfId,Date,Transaction\r\n1,7/15,+1\r\n"
    out = summarize_every_chunking(data, account="Acc1")
    assert out["fileError"] is None
    assert out["accounts"][0]["balance"] == "1.00"


def test_bad_header_in_file_with_account_column_ignores_option() -> None:
    """A bad header is reported as bad_header even when the account option is valid."""
    data = b"TransactionId,Amount,AccountId\n1,5,Acc1\n"
    out = summarize_every_chunking(data, account="Acc1")
    assert out["fileError"] == "bad_header"


def test_blank_lines_before_header_are_skipped_but_counted() -> None:
    """Leading blank lines are skipped: the header is the first record, lines still count."""
    data = b"\n\r\nId,Date,Transaction\n1,13/1,+1\n"
    out = summarize_every_chunking(data, account="Acc1")
    assert out["rejected"] == [{"line": 4, "id": "1", "code": "invalid_date"}]
