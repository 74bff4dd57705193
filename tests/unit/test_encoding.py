"""SPEC §2 file encoding: BOM, LF/CRLF, RFC 4180 quoting, blank lines and line numbers.

Expected line numbers come from the standard library's ``csv.reader`` over the same text,
which is the reference SPEC names ("as Python's csv module counts it").
"""

from __future__ import annotations

import csv
import io

import pytest

from tests.unit._support import summarize_every_chunking

ACCOUNT = "Acc1"


def stdlib_lines(text: str) -> dict[str, int]:
    """Map each data record's first field to csv.reader's line_num after reading it."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    lines: dict[str, int] = {}
    header_seen = False
    for record in reader:
        if not record:
            continue
        if not header_seen:
            header_seen = True
            continue
        lines[record[0]] = reader.line_num
    return lines


def rejected_lines(text: str) -> dict[str, int]:
    """Map each rejected row's id to the line the implementation reports."""
    out = summarize_every_chunking(text.encode(), account=ACCOUNT)
    return {r["id"]: r["line"] for r in out["rejected"]}


# Every data row has date 13/1 so that it is rejected and its line reported.
MULTILINE_CASES = [
    "Id,Date,Transaction\na,13/1,1\nb,13/1,2\n",
    "Id,Date,Transaction\r\na,13/1,1\r\nb,13/1,2\r\n",
    "\ufeffId,Date,Transaction\r\na,13/1,1\r\n\r\nb,13/1,2\r\n",
    "Id,Date,Transaction\n\n\na,13/1,1\n\n\nb,13/1,2\n\n",
    'Id,Date,Transaction\n"a",13/1,"1"\n"b","13/1","2"\n',
    'Id,Date,Transaction,Memo\na,13/1,1,"two\nlines"\nb,13/1,2,x\n',
    'Id,Date,Transaction,Memo\na,13/1,1,"three\nphysical\nlines"\nb,13/1,2,"x\r\ny"\nc,13/1,3,z\n',
    'Id,Date,Transaction,Memo\r\na,13/1,1,"crlf\r\ninside"\r\n\r\nb,13/1,2,"\n\n\n"\r\nc,13/1,3,q\r\n',
    'Id,Memo,Date,Transaction\na,"comma, and ""quotes""\nand newline",13/1,1\nb,"",13/1,2\n',
    'Id,Date,Transaction,Memo\na,13/1,1,"ends with newline\n"\nb,13/1,2,"\n"\n',
    'Id,Date,Transaction,Memo\na,13/1,1,x\nb,13/1,2,"unterminated at end\n',
]


@pytest.mark.parametrize("text", MULTILINE_CASES)
def test_line_numbers_match_stdlib_csv(text: str) -> None:
    """`line` is csv.reader's line_num after the record: the physical line it ends on."""
    assert rejected_lines(text) == stdlib_lines(text)


def test_multiline_ids_are_rejected_with_their_end_line() -> None:
    """Hand-checked: a record spanning lines 2-4 is reported on line 4; the next on 5."""
    text = 'Id,Date,Transaction,Memo\na,13/1,1,"x\ny\nz"\nb,13/1,2,w\n'
    assert rejected_lines(text) == {"a": 4, "b": 5}


def test_blank_lines_not_counted_as_rows() -> None:
    """Blank lines are skipped: not in rowsRead, but they move the line numbers on."""
    text = "Id,Date,Transaction\n\n1,7/15,1\n\r\n\n2,13/1,2\n\n"
    out = summarize_every_chunking(text.encode(), account=ACCOUNT)
    assert out["rowsRead"] == 2
    assert out["rowsAccepted"] == 1
    assert out["rejected"] == [{"line": 6, "id": "2", "code": "invalid_date"}]


def test_row_of_empty_fields_is_not_blank() -> None:
    """A line of commas is a record (of empty fields), not a blank line."""
    text = "Id,Date,Transaction\n,,\n"
    out = summarize_every_chunking(text.encode(), account=ACCOUNT)
    assert out["rowsRead"] == 1
    assert out["rejected"] == [{"line": 2, "id": "", "code": "invalid_id"}]


def test_quoted_fields_are_unquoted_before_validation() -> None:
    """RFC 4180 quoting: quoted ids, dates and amounts are read without their quotes."""
    text = 'Id,Date,Transaction\n"a,b","7/15","+1.50"\n"say ""hi""",7/16,-0.50\n'
    out = summarize_every_chunking(text.encode(), account=ACCOUNT)
    assert out["rejected"] == []
    assert out["accounts"][0]["balance"] == "1.00"
    assert out["accounts"][0]["transactionCount"] == 2


def test_duplicate_detection_sees_unquoted_ids() -> None:
    """'"a,b"' and the same id quoted again are duplicates."""
    text = 'Id,Date,Transaction\n"a,b",7/15,1\n"a,b",7/15,1\n'
    out = summarize_every_chunking(text.encode(), account=ACCOUNT)
    assert out["rejected"] == [{"line": 3, "id": "a,b", "code": "duplicate_id"}]


@pytest.mark.parametrize("terminator", ["\n", "\r\n"])
@pytest.mark.parametrize("bom", [False, True])
def test_bom_and_line_endings_do_not_change_the_summary(terminator: str, bom: bool) -> None:
    """BOM or not, LF or CRLF: the same rows give the same summary."""
    rows = ["Id,Date,Transaction", "0,7/15,+60.5", "1,7/28,-10.3", "2,8/2,-20.46", "3,8/13,+10"]
    text = ("\ufeff" if bom else "") + terminator.join(rows) + terminator
    out = summarize_every_chunking(text.encode(), account=ACCOUNT)
    assert out["rejected"] == []
    assert out["accounts"][0]["balance"] == "39.74"


def test_crlf_does_not_leak_into_last_field() -> None:
    """With CRLF the last column has no trailing carriage return (amount stays valid)."""
    text = "Id,Date,Transaction\r\n1,7/15,5\r\n2,7/15,5.25\r\n"
    out = summarize_every_chunking(text.encode(), account=ACCOUNT)
    assert out["rejected"] == []
    assert out["accounts"][0]["balance"] == "10.25"


def test_bom_inside_the_file_is_data() -> None:
    """Only a leading BOM is dropped: U+FEFF inside an id is an ordinary (format) character."""
    text = "Id,Date,Transaction\n\ufeffx,7/15,5\n"
    out = summarize_every_chunking(text.encode(), account=ACCOUNT)
    assert out["rejected"] == []
    assert out["rowsAccepted"] == 1


def test_final_record_ending_in_bare_cr_is_not_lost() -> None:
    """A last record terminated by a lone CR (a CRLF cut short) is still read, never dropped."""
    data = b"Id,Date,Transaction\n1,7/15,1\n2,7/15,2\r"
    out = summarize_every_chunking(data, account=ACCOUNT)
    assert out["rowsRead"] == 2
    assert out["accounts"][0]["balance"] == "3.00"


def test_cr_only_line_endings_lose_no_row() -> None:
    """Old-Mac CR line endings: every record is read (as csv.reader reads them) - none vanish."""
    text = "Id,Date,Transaction\ra,13/1,1\rb,13/1,1\rc,13/1,1\r"
    out = summarize_every_chunking(text.encode(), account=ACCOUNT)
    assert out["rowsRead"] == 3
    assert rejected_lines(text) == stdlib_lines(text)
