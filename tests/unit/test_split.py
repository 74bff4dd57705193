"""The range split (stori_pipeline.scaleout) against one sequential read of the same bytes.

Files are cut at random points into 1-64 ranges; each range is scanned on its own, the chain
is linked, each slice is read (header + slice) through the single path's own reader with its
line offset, duplicates across slices are resolved by fingerprint, and the result must be
exactly the sequential read's: records, line numbers, rejections (lines, ids, codes, order),
counts, summaries and file-level errors.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stori_pipeline.records import Rejection, Transaction
from stori_pipeline.scaleout.ranges import (
    SliceCounts,
    chunks_of,
    fingerprint_slice,
    losers,
    merge_results,
    plan_header,
    with_header,
)
from stori_pipeline.scaleout.split import (
    Candidate,
    RangeScan,
    adjust_cut,
    count_lines,
    cut_points,
    link,
    scan_range,
    split_bytes,
)
from stori_pipeline.stream import TransactionStream
from tests.unit.test_properties import GeneratedFile, csv_files


@dataclass(frozen=True)
class Read:
    """Everything a user can observe of one read."""

    result: dict[str, Any]
    rejected: list[Rejection]
    transactions: list[Transaction]


async def _sequential(data: bytes, account: str | None) -> Read:
    rejected: list[Rejection] = []
    stream = TransactionStream(chunks_of(data, 7), account=account, on_reject=rejected.append)
    transactions = [t async for batch in stream for t in batch]
    return Read(stream.result().to_json(), rejected, transactions)


async def _distributed(
    data: bytes, account: str | None, range_bytes: int, partitions: int = 3
) -> Read:
    window = data[: 1 << 20]
    plan = await plan_header(window, size=len(data), account=account)
    assert plan is not None
    if plan.file_error is not None:
        result = {
            "rowsRead": 0,
            "rowsAccepted": 0,
            "rowsRejected": 0,
            "accounts": [],
            "rejected": [],
            "fileError": plan.file_error,
        }
        return Read(result, [], [])
    header = data[: plan.end]
    slices = split_bytes(
        data, header_end=plan.end, header_lines=plan.lines, range_bytes=range_bytes
    )
    # Pass 1: fingerprints; a malformed slice ends the file there.
    parts: list[list[bytes]] = []
    kept = []
    for piece in slices:
        counts, blobs = await fingerprint_slice(
            with_header(header, chunks_of(data[piece.start : piece.end], 5)),
            account=account,
            line_offset=piece.line_offset,
            partitions=partitions,
        )
        kept.append(piece)
        parts.append(blobs)
        if counts.file_error is not None:
            break
    lost: dict[int, list[int]] = {}
    for partition in range(partitions):
        for index, lines in losers(
            (piece.index, blobs[partition]) for piece, blobs in zip(kept, parts, strict=True)
        ).items():
            lost.setdefault(index, []).extend(lines)
    # Pass 2: commit.
    rejected: list[Rejection] = []
    transactions: list[Transaction] = []
    results: list[SliceCounts] = []
    for piece in kept:
        stream = TransactionStream(
            with_header(header, chunks_of(data[piece.start : piece.end], 11)),
            account=account,
            on_reject=rejected.append,
            line_offset=piece.line_offset,
            duplicate_lines=lost.get(piece.index, ()),
        )
        transactions += [t async for batch in stream for t in batch]
        results.append(SliceCounts.of(stream.result()))
    return Read(merge_results(results).to_json(), rejected, transactions)


def _both(data: bytes, account: str | None, range_bytes: int) -> tuple[Read, Read]:
    async def run() -> tuple[Read, Read]:
        return await _sequential(data, account), await _distributed(data, account, range_bytes)

    return asyncio.run(run())


def _assert_same(data: bytes, account: str | None, range_bytes: int) -> None:
    single, split = _both(data, account, range_bytes)
    assert split.result == single.result
    assert split.rejected == single.rejected
    assert split.transactions == single.transactions


@st.composite
def chaotic_files(draw: st.DrawFn) -> GeneratedFile:
    """Raw text from the characters that shape CSV (quotes, commas, line endings, bad bytes).

    Stray and doubled quotes, every line ending, blank lines, multibyte and undecodable bytes,
    an optional BOM.
    """
    pieces = st.sampled_from(
        ['"', '""', ",", "\n", "\r", "\r\n", "1", "7/15", "10.5", "a", "ñ", "😀", " ", 'x"y']
    )
    body = "".join(draw(st.lists(pieces, max_size=120)))
    header = draw(
        st.sampled_from(
            ["Id,Date,Transaction", '"Id","Date","Transaction"', "Id,Date,Amount,AccountId"]
        )
    )
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    prefix = "\ufeff" if draw(st.booleans()) else ""
    data = (prefix + header + ending + body).encode()
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\xff" + data[at:]
    return GeneratedFile(data, "Acc1")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=csv_files(), cuts=st.integers(1, 64))
def test_generated_files_split_anywhere_read_as_one(file: GeneratedFile, cuts: int) -> None:
    """Mixed valid/invalid files cut into 1-64 ranges read exactly as one sequential read."""
    _assert_same(file.data, file.account, max(1, len(file.data) // cuts))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=chaotic_files(), cuts=st.integers(1, 64))
def test_chaotic_quoting_split_anywhere_reads_as_one(file: GeneratedFile, cuts: int) -> None:
    """Stray quotes, quoted line breaks across cuts, CR-only and CRLF, BOM: 1-64 ranges."""
    range_bytes = max(1, len(file.data) // cuts)
    _assert_same(file.data, file.account, range_bytes)


@pytest.mark.parametrize("range_bytes", [1, 2, 3, 5, 8, 13, 40])
def test_duplicates_across_ranges_keep_the_first_accepted(range_bytes: int) -> None:
    """SPEC §2: a later slice's copy of an accepted (account, Id) is duplicate_id.

    An invalid first occurrence does not count, so the later valid one is accepted.
    """
    data = (
        b"Id,Date,Amount,AccountId\n"
        b"1,7/15,10,A\n"
        b"2,bad,1,A\n"
        b"1,7/16,11,B\n"
        b"2,7/17,12,A\n"
        b"1,7/18,13,A\n"
        b"2,7/19,14,A\n"
    )
    single, split = _both(data, None, range_bytes)
    assert [r.code for r in split.rejected] == ["invalid_date", "duplicate_id", "duplicate_id"]
    assert split == single


def test_quoted_newlines_straddling_every_cut() -> None:
    """A record whose quoted field holds line breaks is read whole by the range it begins in."""
    data = b'Id,Date,Transaction,Memo\n1,7/15,1,"a\nb\r\nc\rd"\n2,7/16,2,"\n\n\n"\r\n3,7/17,3,x\r'
    for range_bytes in range(1, len(data)):
        _assert_same(data, "Acc1", range_bytes)


def test_crlf_cut_between_cr_and_lf_counts_one_line() -> None:
    r"""A cut between \r and \n moves past the \n on both sides of it."""
    assert adjust_cut(5, 0x0D, 0x0A) == 6
    assert adjust_cut(5, 0x0D, 0x41) == 5
    assert count_lines(b"a\r\nb\rc\n\r\r\n") == 5
    data = b"Id,Date,Transaction\r\n1,7/15,1\r\n2,bad,2\r\n3,7/17,x\r\n"
    for range_bytes in range(1, 12):
        _assert_same(data, "Acc1", range_bytes)


def test_a_slice_starting_with_a_blank_line_after_a_cr_header_keeps_that_line() -> None:
    r"""The header's lone \r and a slice's leading \n are two line ends, not one \r\n.

    Found by the chaotic-quoting property test: the last record's line was one too low.
    """
    for data in (
        b'Id,Date,Transaction\r""""\n\n"',
        b"Id,Date,Transaction\r1,7/15,1\n\n\n2,7/16,x\n",
        b"Id,Date,Transaction\r\r\n1,7/15,1\n\n2,bad,2",
    ):
        for range_bytes in range(1, len(data)):
            _assert_same(data, "Acc1", range_bytes)


def test_unterminated_quote_at_the_end_matches_the_single_read() -> None:
    """A truncated upload (open quote at the end of the object) ends the same way."""
    data = b'Id,Date,Transaction\n1,7/15,1\n2,7/16,"2\n3,7/17,3\n'
    for range_bytes in range(1, len(data)):
        _assert_same(data, "Acc1", range_bytes)


def test_a_field_over_the_limit_is_malformed_at_the_same_line() -> None:
    """malformed_csv: rows before the break count, nothing after it, the same detail line."""
    data = (
        b"Id,Date,Transaction\n1,7/15,1\n2,bad,2\n" + b'3,7/17,"' + b"z" * 600_000 + b"\n4,7/18,4\n"
    )
    for range_bytes in (30_000, 200_000, 1_000_000):
        single, split = _both(data, "Acc1", range_bytes)
        assert single.result["fileError"] == "malformed_csv"
        assert split == single


def test_a_field_just_over_the_character_limit_is_malformed_in_both() -> None:
    """A field over 131,072 characters but under the scan's byte bound: the read finds it."""
    data = (
        b"Id,Date,Transaction\n1,7/15,1\n"
        b'2,7/16,"' + "é".encode() * 140_000 + b'"\n3,7/17,3\n4,7/18,4\n'
    )
    for range_bytes in (20_000, 300_000):
        single, split = _both(data, "Acc1", range_bytes)
        assert single.result["fileError"] == "malformed_csv"
        assert split == single


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n\n",
        b"Id,Date\n1,7/15\n",
        b"\xef\xbb\xbfId,Date,Transaction\n",
        b"Id,Id,Date,Amount\n",
    ],
)
def test_file_level_errors_are_the_single_reads(data: bytes) -> None:
    """empty_file, bad_header and a header-only file: decided once, by the plan."""
    single, split = _both(data, "Acc1", 3)
    assert split.result == single.result


def test_link_refuses_scans_that_do_not_chain() -> None:
    """A scan whose candidates never start at the previous range's boundary is a bug, loudly."""
    scans = [
        RangeScan(0, 10, 20, 1, (Candidate("record", 10, 0, 22),)),
        RangeScan(1, 20, 30, 1, (Candidate("record", 20, 0, 30), Candidate("quoted", 25, 1, 30))),
    ]
    with pytest.raises(ValueError, match="no scan"):
        link(scans, header_end=10, header_lines=1, size=30)


def test_cut_points_cover_the_records_after_the_header() -> None:
    """Nominal ranges tile [header end, size) with the last one shorter."""
    assert cut_points(4, 15, 5) == [(4, 9), (9, 14), (14, 15)]
    assert cut_points(15, 15, 5) == []


def test_scan_grows_its_window_until_the_record_ends() -> None:
    """A range scanned with a tiny window still finds a boundary far past its end."""
    data = b'Id,Date,Transaction\n1,7/15,"' + b"q\n" * 5000 + b'"\n2,7/16,2\n'
    scan = scan_range(data, 1, 30, 40, window=16)
    assert any(c.next == len(data) - len(b"2,7/16,2\n") for c in scan.candidates)
