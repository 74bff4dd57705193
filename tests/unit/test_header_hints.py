"""A bad_header caused by UTF-16, an archive or another delimiter says so (SPEC §2)."""

from __future__ import annotations

import gzip
import json
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from stori_pipeline.cli import main

TEXT = "Id,Date,Transaction\n0,7/15,+60.5\n1,7/28,-10.3\n"


def _zip(data: bytes) -> bytes:
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("t.csv", data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (TEXT.encode("utf-16"), "UTF-16"),
        (b"\xfe\xff" + TEXT.encode("utf-16-be"), "UTF-16"),
        (TEXT.encode("utf-16-le"), "UTF-16"),  # no BOM: the NUL bytes tell
        (gzip.compress(TEXT.encode()), "gzip-compressed"),
        (_zip(TEXT.encode()), "zip archive"),
        (TEXT.replace(",", ";").encode(), "separated by ';'"),
        (TEXT.replace(",", "\t").encode(), "separated by tabs"),
    ],
)
def test_the_cause_is_in_the_bad_header_detail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, says: str
) -> None:
    """The file is rejected as bad_header, and the message says why in the user's terms."""
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    status = main(["summarize", str(path), "--account", "A", "--json"])
    captured = capsys.readouterr()
    assert status == 2
    assert json.loads(captured.out)["fileError"] == "bad_header"
    assert "bad_header" in captured.err
    assert says in captured.err


def test_a_plain_missing_column_gets_no_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A UTF-8, comma-separated header that lacks a column is only told what is missing."""
    path = tmp_path / "t.csv"
    path.write_text("Id,When,Transaction\n0,7/15,+1\n")
    assert main(["summarize", str(path), "--account", "A"]) == 2
    err = capsys.readouterr().err
    assert "missing required column 'date'" in err
    assert ";" not in err.split("any case)", 1)[1]
