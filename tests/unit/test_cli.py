"""SPEC §3's offline command: ``stori-pipeline summarize FILE [--account ID] [--json]``."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from stori_pipeline.cli import main

TOP_KEYS = {"rowsRead", "rowsAccepted", "rowsRejected", "accounts", "rejected", "fileError"}


def summarize_json(
    path: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, Any], str]:
    """Run ``summarize --json``; return (exit status, parsed stdout, stderr)."""
    status = main(["summarize", str(path), *extra, "--json"])
    captured = capsys.readouterr()
    return status, json.loads(captured.out), captured.err


def write(tmp_path: Path, data: bytes) -> Path:
    """A file holding ``data``."""
    path = tmp_path / "transactions.csv"
    path.write_bytes(data)
    return path


def test_json_top_level_keys_and_money(
    example_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The JSON object has exactly SPEC §3's keys, money as 2-decimal strings."""
    status, out, err = summarize_json(example_csv, capsys, "--account", "AccountId123")
    assert status == 0
    assert err == ""
    assert set(out) == TOP_KEYS
    (account,) = out["accounts"]
    for flow in (account["credit"], account["debit"]):
        assert isinstance(flow["total"], str)
        assert Decimal(flow["total"]).as_tuple().exponent == -2
    assert isinstance(account["balance"], str)
    assert account["balance"] == "39.74"


def test_rejected_rows_in_file_order_exit_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rejected rows do not fail the command; they are listed in file order."""
    data = (
        b"TransactionId,Date,Amount,AccountId\n"
        b"1,7/15,5,Acc1\n"
        b"2,13/1,5,Acc1\n"
        b"3,7/15,x,Acc1\n"
        b"1,7/16,5,Acc1\n"
        b",7/15,5,Acc1\n"
        b"4,7/15,5,bad!\n"
        b"5,7/15\n"
        b"6,7/15,5,Acc1\xff\n"
        b"7,7/15,-2,Acc2\n"
    )
    status, out, err = summarize_json(write(tmp_path, data), capsys)
    assert status == 0
    assert err == ""
    assert (out["rowsRead"], out["rowsAccepted"], out["rowsRejected"]) == (9, 2, 7)
    assert [(r["line"], r["code"]) for r in out["rejected"]] == [
        (3, "invalid_date"),
        (4, "invalid_amount"),
        (5, "duplicate_id"),
        (6, "invalid_id"),
        (7, "invalid_account"),
        (8, "field_count"),
        (9, "invalid_encoding"),
    ]
    assert [r["id"] for r in out["rejected"][:5]] == ["2", "3", "1", "", "4"]
    for rejection in out["rejected"]:
        assert set(rejection) == {"line", "id", "code"}
    assert [(a["accountId"], a["balance"]) for a in out["accounts"]] == [
        ("Acc1", "5.00"),
        ("Acc2", "-2.00"),
    ]
    assert out["fileError"] is None


@pytest.mark.parametrize(
    ("data", "account", "code"),
    [
        (b"Id,Date\n1,7/15\n", "Acc1", "bad_header"),
        (b"Id,TransactionId,Date,Amount\n1,1,7/15,1\n", "Acc1", "bad_header"),
        (b"Id,Date,Transaction\n1,7/15,1\n", None, "no_account"),
        (b"Id,Date,Transaction\n1,7/15,1\n", "bad account", "no_account"),
        (b"", "Acc1", "empty_file"),
        (b"\n\n", "Acc1", "empty_file"),
        (b"\xef\xbb\xbf", "Acc1", "empty_file"),
    ],
)
def test_file_level_rejection_exit_two(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    data: bytes,
    account: str | None,
    code: str,
) -> None:
    """File-level rejection: exit 2, fileError code in the JSON, one line on stderr."""
    extra = ["--account", account] if account is not None else []
    status, out, err = summarize_json(write(tmp_path, data), capsys, *extra)
    assert status == 2
    assert out["fileError"] == code
    assert set(out) == TOP_KEYS
    assert out["accounts"] == []
    assert err.strip()
    assert len(err.strip().splitlines()) == 1


def test_missing_file_exit_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unreadable (missing) file: exit 2 and a one-line message, no traceback."""
    status = main(["summarize", str(tmp_path / "nope.csv"), "--account", "A", "--json"])
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_directory_exit_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory is not a readable file: exit 2 and a one-line message."""
    status = main(["summarize", str(tmp_path), "--account", "A", "--json"])
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1


def test_header_only_exit_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A header-only file is read fine: exit 0, no accounts."""
    path = write(tmp_path, b"Id,Date,Transaction\n")
    status, out, err = summarize_json(path, capsys, "--account", "Acc1")
    assert status == 0
    assert out == {
        "rowsRead": 0,
        "rowsAccepted": 0,
        "rowsRejected": 0,
        "accounts": [],
        "rejected": [],
        "fileError": None,
    }
    assert err == ""


def test_account_option_ignored_with_column(
    seed_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With an AccountId column, --account does not rename or merge accounts."""
    status, out, _ = summarize_json(seed_csv, capsys, "--account", "SomeoneElse")
    assert status == 0
    assert [a["accountId"] for a in out["accounts"]] == ["AccountId123"]
    assert out["rowsAccepted"] == 3000


def test_table_output(example_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json a readable table shows month names and the numbers."""
    status = main(["summarize", str(example_csv), "--account", "AccountId123"])
    out = capsys.readouterr().out
    assert status == 0
    for text in ("July", "August", "39.74", "35.25", "-15.38", "AccountId123"):
        assert text in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_table_output_file_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json a file-level rejection still exits 2 with one stderr line."""
    status = main(["summarize", str(write(tmp_path, b"")), "--account", "A"])
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1
    assert "empty_file" in err


def test_json_output_is_one_line(example_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints one JSON object (nothing else on stdout)."""
    main(["summarize", str(example_csv), "--account", "AccountId123", "--json"])
    out = capsys.readouterr().out
    assert json.loads(out)["fileError"] is None
    assert out.count("\n") == 1


def test_non_ascii_ids_survive_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rejected non-ASCII ids come back unchanged through JSON."""
    path = write(tmp_path, "Id,Date,Transaction\nñandú😀,13/1,1\n".encode())
    _, out, _ = summarize_json(path, capsys, "--account", "Acc1")
    assert out["rejected"] == [{"line": 2, "id": "ñandú😀", "code": "invalid_date"}]


@pytest.mark.parametrize(
    "data",
    [
        b"Id,Date,Transaction\n" + b"i" * 200_000 + b",7/15,1\nb,7/15,2\n",
        # A stray opening quote swallows the rest of a large file into one field.
        b'Id,Date,Transaction\n"a,7/15,1\n' + b"".join(b"%d,7/15,1\n" % i for i in range(20_000)),
    ],
    ids=["huge-field", "unterminated-quote"],
)
def test_oversized_field_gives_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes
) -> None:
    """Hostile field sizes end in a status (0 or 2) and at most one stderr line, never a crash."""
    status = main(["summarize", str(write(tmp_path, data)), "--account", "Acc1", "--json"])
    captured = capsys.readouterr()
    assert status in {0, 2}
    assert "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) <= 1
    assert set(json.loads(captured.out)) == TOP_KEYS
