"""BlockReader: the records and line numbers of ``csv.reader`` over the same text, in any pieces."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stori_pipeline.csv_blocks import Block, BlockReader

# Every character the excel dialect gives a meaning to, and a few that it does not.
_TEXT = st.text(alphabet=st.sampled_from(['"', ",", "\r", "\n", "a", "7", " ", "\x00", "é"]))


def expected(text: str) -> tuple[list[list[str]], list[int], bool]:
    """What ``csv.reader`` over the text opened with ``newline=""`` reads: records, lines, error."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[list[str]] = []
    lines: list[int] = []
    try:
        for record in reader:
            records.append(record)
            lines.append(reader.line_num)
    except csv.Error:
        return records, lines, True
    return records, lines, False


def pieces(text: str, cuts: list[int]) -> Iterator[str]:
    """The text cut at the given offsets (sorted, deduplicated, in range)."""
    start = 0
    for cut in sorted({c % (len(text) + 1) for c in cuts}):
        yield text[start:cut]
        start = cut
    yield text[start:]


def read_blocks(text_pieces: Iterator[str], min_block: int) -> list[Block]:
    """Every block a reader gives for the pieces, up to an error or the text's end."""
    reader = BlockReader(min_block)
    blocks: list[Block] = []
    for piece in text_pieces:
        blocks += reader.feed(piece)
        if blocks and blocks[-1].error is not None:
            return blocks
    return [*blocks, reader.finish()]


def actual(blocks: list[Block]) -> tuple[list[list[str]], list[int], bool]:
    """The blocks' records, lines and whether one stopped with an error (as :func:`expected`)."""
    records = [record for block in blocks for record in block.records]
    lines = [line for block in blocks for line in block.ends]
    for block in blocks:
        assert block.blank == (not all(block.records))
        assert len(block.records) == len(block.ends)
    return records, lines, any(block.error is not None for block in blocks)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT, cuts=st.lists(st.integers(min_value=0, max_value=200)), size=st.integers(1, 12))
def test_any_text_in_any_pieces_reads_as_csv_reader_does(
    text: str, cuts: list[int], size: int
) -> None:
    """Every record, line number and error, whatever the pieces and the block size."""
    assert actual(read_blocks(pieces(text, cuts), size)) == expected(text)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.lists(
            st.text(alphabet=st.sampled_from(["a", "1", " ", ",", '"', "\n", "\r"])), min_size=1
        ),
        max_size=30,
    ),
    ending=st.sampled_from(["\n", "\r\n", "\r"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
    cuts=st.lists(st.integers(min_value=0, max_value=2000)),
    size=st.integers(1, 64),
)
def test_files_written_by_csv_writer_read_back_as_written(
    rows: list[list[str]], ending: str, quoting: int, cuts: list[int], size: int
) -> None:
    """Real files, mostly quote-free lines with a few quoted ones: the split path's case."""
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator=ending, quoting=quoting).writerows(rows)
    text = out.getvalue()
    assert actual(read_blocks(pieces(text, cuts), size)) == expected(text)


@pytest.mark.parametrize("limit", [3, 4, 8])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT, cuts=st.lists(st.integers(min_value=0, max_value=200)), size=st.integers(1, 12))
def test_a_field_over_the_limit_stops_the_read_where_csv_reader_does(
    limit: int, text: str, cuts: list[int], size: int
) -> None:
    """With a small limit, the error comes after the same records as the csv module's."""
    old = csv.field_size_limit(limit)
    try:
        assert actual(read_blocks(pieces(text, cuts), size)) == expected(text)
    finally:
        csv.field_size_limit(old)


def test_an_unended_line_over_the_limit_is_refused_before_the_text_ends() -> None:
    """A file that is one endless field is refused without holding all of it."""
    reader = BlockReader(16)
    limit = csv.field_size_limit()
    blocks: list[Block] = []
    fed = 0
    for _ in range(100):
        blocks += reader.feed("x" * 10_000)
        fed += 10_000
        if blocks:
            break
    assert [b.error is not None for b in blocks] == [True]
    assert fed <= 4 * limit


def test_an_unclosed_quote_is_read_a_logarithmic_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cut record is read again only once the text held has doubled."""
    reads: list[int] = []
    real = BlockReader._read_csv

    def counted(self: BlockReader, block: str, *, final: bool) -> tuple[Block, str]:
        reads.append(len(block))
        return real(self, block, final=final)

    monkeypatch.setattr(BlockReader, "_read_csv", counted)
    reader = BlockReader(64)
    blocks = list(reader.feed('1,"open\n'))
    for _ in range(10_000):
        blocks += reader.feed("more text,\n")
    blocks.append(reader.finish())
    assert len(reads) < 20
    assert [len(b.records) for b in blocks if b.records] == [1]


_FIELD = st.text(alphabet=st.sampled_from(["a", "7", " ", "-", ".", "/"]), max_size=4)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.integers(1, 5),
    count=st.integers(0, 150),
    others=st.lists(
        st.tuples(
            st.integers(0, 150),
            st.one_of(
                st.lists(_FIELD, max_size=7),  # any width, blank lines included
                st.lists(st.text(alphabet=st.sampled_from(["a", ",", '"', "\n"])), min_size=1),
            ),
        ),
        max_size=6,
    ),
    ending=st.sampled_from(["\n", "\r\n"]),
    size=st.integers(1, 2000),
    data=st.data(),
)
def test_lines_of_one_width_with_a_few_others_read_as_csv_reader_does(
    width: int,
    count: int,
    others: list[tuple[int, list[str]]],
    ending: str,
    size: int,
    data: st.DataObject,
) -> None:
    """The column path: most lines of one width, a few of another, quoted or blank.

    Each block's records are also checked as a sequence: indexing, slicing and iterating
    give the same records as a list of them.
    """
    rows = data.draw(
        st.lists(st.lists(_FIELD, min_size=width, max_size=width), min_size=count, max_size=count)
    )
    for position, row in others:
        rows.insert(position, row)
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator=ending).writerows(rows)
    text = out.getvalue()
    blocks = read_blocks(pieces(text, []), size)
    assert actual(blocks) == expected(text)
    for block in blocks:
        records = list(block.records)
        assert [block.records[i] for i in range(len(records))] == records
        assert [block.records[i] for i in range(-len(records), 0)] == records
        # Any slice of step one: negative, past the end, or backwards (empty).
        start, stop = (data.draw(st.integers(-len(records) - 2, len(records) + 2)) for _ in "ab")
        part = block.records[start:stop]
        assert len(part) == len(records[start:stop])
        assert list(part) == records[start:stop]
        assert [part[i] for i in range(len(part))] == records[start:stop]


@pytest.mark.parametrize("min_block", [1, 4, 16, 64])
def test_lone_cr_lines_after_a_quoted_line_break_are_read_before_a_field_over_the_limit(
    min_block: int,
) -> None:
    r"""A record cut at a ``\n`` inside quotes, then old-Mac ``\r`` line ends: none is lost.

    The line ends after the cut are lone ``\r``; they end lines as well as ``\n`` does, so
    the records before the over-long field are read, and the error comes after them.
    """
    old = csv.field_size_limit(10)
    try:
        text = '"a\nb"\rc\rd\r' + "x" * 20 + "\r"
        got = actual(read_blocks(iter([text]), min_block))
        assert got == expected(text)
        assert got[0] == [["a\nb"], ["c"], ["d"]]
    finally:
        csv.field_size_limit(old)


def test_a_block_ends_at_the_first_line_end_past_its_size() -> None:
    """A long first line does not make the block everything up to the last line end held."""
    reader = BlockReader(64)
    text = "x" * 200 + "\n" + "a,b\n" * 1000
    blocks = list(reader.feed(text))
    assert len(blocks[0].records) == 1
    assert max(len(b.records) for b in blocks) < 100
