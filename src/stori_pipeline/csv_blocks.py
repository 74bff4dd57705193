r"""CSV records of decoded text, a block of lines at a time, exactly as the csv module reads them.

:class:`BlockReader` is given a file's text in pieces of any size and hands back blocks of
records, each with the line it ends on: what ``csv.reader`` over the file opened with
``newline=""`` returns, and its ``line_num`` after each record (a line ends at ``\r\n``,
``\r`` or ``\n``). It does less work than ``csv.reader`` where it can prove the result is the
same, which is on nearly every line of a real file:

- A line without a quote is its fields split at commas (``str.split``: a quote is the only
  thing that makes the excel dialect's comma or line break mean anything else). ``\r\n``
  line endings are made ``\n`` first, unless the block also holds a lone ``\r`` (an old Mac
  line end), whose block the csv module reads instead.
- A line with a quote is read by the csv module on its own. When that leaves a quoted field
  open (a field holding a line break), or when quotes are common in the block (more than
  one per four lines), the whole block is read by the csv module instead.
- A block without blank lines is split all at once, into :class:`Columns` (one list per
  field, no list per record), with the few lines of another width than the rest set aside
  as records; a block with blank lines, or of many widths, is a list of records.
- A field longer than the csv module's limit (``csv.field_size_limit()``) raises
  ``csv.Error`` there: a block that could hold such a field (a run of characters without a
  comma or a line break over half the limit) is read by the csv module too, which raises
  exactly where it would have.

A block ends at a line end. When the csv module finds the block ended inside a quoted field,
the record's text is carried into the next block, which is not read before the text held
has doubled (so a field that never closes is read a logarithmic number of times, until the
field limit ends it). Memory is one block of text and its records.
"""

from __future__ import annotations

import csv
import io
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import NamedTuple, overload

__all__ = ["MIN_BLOCK_CHARS", "Block", "BlockReader", "Columns"]

# Text read at a time (the last line is held back until its end arrives). Small enough that a
# block's records are still in the CPU caches while they are validated, large enough that
# the per-block work is nothing per row: 16-64 Ki characters ran alike, 256 Ki slower.
MIN_BLOCK_CHARS = 32 * 1024


class Columns(Sequence[list[str]]):
    """Records held as columns: ``columns[k][j]`` is field *k* of record ``positions[j]``.

    What a block of lines is read as when nearly all are of one width: the columns come from
    one ``str.split`` of the whole block, so no list is built per record — the validator
    works column by column anyway. The few records of another width (``odd``: position ->
    record) are kept aside, as the validator would set them aside; ``positions`` are the
    others', in order. Indexing gives a record (a list), slicing (by steps of one) a
    ``Columns``. The odd records may be replaced, but none added or removed: where they
    are is worked out once.
    """

    __slots__ = ("_length", "_odd_at", "columns", "odd")

    def __init__(
        self,
        columns: list[list[str]],
        length: int,
        odd: dict[int, list[str]] | None = None,
    ) -> None:
        self.columns = columns
        self._length = length
        self.odd: dict[int, list[str]] = odd or {}
        self._odd_at = sorted(self.odd)  # the odd records' positions, ascending

    @property
    def width(self) -> int:
        """Fields per record of the columns."""
        return len(self.columns)

    @property
    def positions(self) -> Sequence[int]:
        """The positions of the records held in the columns (all but the odd ones)."""
        if not self.odd:
            return range(self._length)
        positions: list[int] = []
        at = 0
        for position in self._odd_at:  # a few: the runs between them are extended in C
            positions += range(at, position)
            at = position + 1
        positions += range(at, self._length)
        return positions

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> list[str]: ...
    @overload
    def __getitem__(self, index: slice) -> Columns: ...
    def __getitem__(self, index: int | slice) -> list[str] | Columns:
        if isinstance(index, slice):
            return self._slice(range(self._length)[index])
        if not self.odd:
            return [column[index] for column in self.columns]
        position = range(self._length)[index]  # an IndexError when out of range
        record = self.odd.get(position)
        if record is not None:
            return record
        at = self._column_index(position)
        return [column[at] for column in self.columns]

    def __iter__(self) -> Iterator[list[str]]:
        if not self.odd:
            return map(list, zip(*self.columns, strict=True))
        return map(self.__getitem__, range(self._length))

    def _column_index(self, position: int) -> int:
        """Where the record at ``position`` (not an odd one) is in the columns."""
        return position - bisect_left(self._odd_at, position)

    def _slice(self, indexes: range) -> Columns:
        if indexes.step != 1:
            raise ValueError("Columns are sliced by steps of one")
        start, stop = indexes.start, indexes.stop
        if not self.odd:
            return Columns([column[start:stop] for column in self.columns], len(indexes))
        odd_at = self._odd_at
        first, last = bisect_left(odd_at, start), bisect_left(odd_at, stop)
        low = start - first
        high = max(low, stop - last)  # a backwards slice is empty
        odd = self.odd
        return Columns(
            [column[low:high] for column in self.columns],
            len(indexes),
            {i - start: odd[i] for i in odd_at[first:last]},
        )


class Block(NamedTuple):
    """Records read, in file order, with the line each ends on.

    ``blank`` says some records are empty (blank lines: lines, but not rows). ``error`` is
    the ``csv.Error`` that stopped the read after these records (a field over the csv
    module's limit); nothing can be read after it.
    """

    records: Sequence[list[str]]
    ends: Sequence[int]
    blank: bool = False
    error: csv.Error | None = None


class BlockReader:
    """Turns a text, fed in pieces, into :class:`Block` values (see the module docstring)."""

    def __init__(self, min_block: int = MIN_BLOCK_CHARS) -> None:
        self._min_block = min_block
        self._need = min_block
        self._parts: list[str] = []
        self._size = 0
        self._cut = 0  # the held text's first characters that are a record cut at a line end
        self._line = 0  # lines read so far (the held text starts on the next)

    @property
    def line(self) -> int:
        """The line the last record read ends on (0 before any)."""
        return self._line

    def feed(self, text: str) -> Iterator[Block]:
        """Take the next piece of the text; yield the blocks of records it completes."""
        self._parts.append(text)
        self._size += len(text)
        if self._size < self._need:
            return
        pending = "".join(self._parts)
        begin = 0
        while len(pending) - begin >= self._need:
            # The text before ``floor`` is known not to end a record: a cut one, read before.
            floor = begin + self._cut
            end = _line_end(pending, begin, begin + self._need)
            if end <= floor:  # the first line end past the block's size, if one has come
                end = _next_line_end(pending, max(floor, begin + self._need - 1))
            if end <= floor:  # no line has ended since the last read
                error = _field_over_limit(pending[begin:])
                if error is not None:
                    yield Block([], (), error=error)
                    return
                self._need = 2 * (len(pending) - begin)
                break
            block, cut = self._read(pending[begin:end], final=False)
            yield block
            if block.error is not None:
                return
            begin = end - len(cut)
            self._cut = len(cut)
            self._need = max(self._min_block, 2 * len(cut))
        self._parts = [pending[begin:]] if begin < len(pending) else []
        self._size = len(pending) - begin

    def finish(self) -> Block:
        """The records of the text held back, once the text has ended."""
        pending = "".join(self._parts)
        self._parts, self._size, self._need, self._cut = [], 0, self._min_block, 0
        if not pending:
            return Block([], ())
        return self._read(pending, final=True)[0]

    def _read(self, block: str, *, final: bool) -> tuple[Block, str]:
        """Read a block (whole lines unless ``final``); return it and the text of a cut record."""
        text = block
        if "\r" in block:
            if block.count("\r") != block.count("\r\n"):  # a lone \r ends a line too
                return self._read_csv(block, final=final)
            text = block.replace("\r\n", "\n")
        if _may_exceed_limit(text):
            return self._read_csv(block, final=final)
        quotes = text.count('"')
        if quotes > text.count("\n") // 4 + 2:  # many quoted lines: the csv module's block
            return self._read_csv(block, final=final)
        quoted = _quoted_records(text) if quotes else []
        if quoted is None:  # a quoted field holds a line break
            return self._read_csv(block, final=final)
        blank = text[0] == "\n" or "\n\n" in text
        records = (None if blank else _columns_of(text, quoted)) or _split_records(
            text, quoted, blank=blank
        )
        start = self._line
        self._line = start + len(records)
        return Block(records, range(start + 1, self._line + 1), blank), ""

    def _read_csv(self, block: str, *, final: bool) -> tuple[Block, str]:
        r"""Read a block with the csv module, one physical line at a time.

        Unless it is the text's end, a blank line follows the block: read at the start of a
        record, it is an empty record, and the block ended cleanly; read inside a quoted
        field, it becomes part of the field, and the last record is cut — its lines are
        returned to be read again with the text after them (also when that blank line is what
        took the field over the csv module's limit: the text after it may close the field).
        """
        lines = list(io.StringIO(block, newline=""))
        reader = csv.reader(lines if final else chain(lines, ("\n",)))
        start = self._line
        records: list[list[str]] = []
        ends: list[int] = []
        try:
            for record in reader:
                records.append(record)
                ends.append(start + reader.line_num)
        except csv.Error as exc:
            if final or reader.line_num <= len(lines):
                self._line = ends[-1] if ends else start
                return Block(records, ends, not all(records), exc), ""
            # The blank line took an open quoted field over the limit: it is cut, not wrong.
            records.append([""])
            ends.append(start + reader.line_num)
        carry = ""
        if not final:
            cut = records.pop()
            ends.pop()
            if cut:
                carry = "".join(lines[(ends[-1] - start if ends else 0) :])
        self._line = ends[-1] if ends else start
        return Block(records, ends, not all(records)), carry


def _line_end(text: str, begin: int, limit: int) -> int:
    r"""Where the last line that ends in ``text[begin:limit]`` ends (0: none does).

    That is after its last ``\n``, or after a later lone ``\r``: one with a character after
    it inside the range that is not a ``\n`` (a ``\r`` at the range's end may be a ``\r\n``
    cut in two).
    """
    newline = text.rfind("\n", begin, limit) + 1
    return max(newline, text.rfind("\r", begin, min(limit, len(text)) - 1) + 1)


def _next_line_end(text: str, start: int) -> int:
    r"""Where the first line that ends at or after ``start`` ends (0: none has yet)."""
    newline = text.find("\n", start)
    # A lone \r before that \n (not its \r\n), with a character after it.
    carriage = text.find("\r", start, (len(text) if newline < 0 else newline) - 1)
    if carriage >= 0:
        return carriage + 1
    return newline + 1


def _field_over_limit(text: str) -> csv.Error | None:
    """The csv module's error in ``text``, held because no line has ended in it lately.

    It starts a record, and the csv module's errors come from the characters read, so an
    error in it is the file's: a field over the limit is refused as soon as it passes the
    limit, rather than held to the end of the file.
    """
    if len(text) <= csv.field_size_limit():
        return None
    try:
        for _ in csv.reader(io.StringIO(text, newline="")):
            pass
    except csv.Error as exc:
        return exc
    return None


class _Quoted(NamedTuple):
    """A line holding a quote: where it is in the block, and the record the csv module reads."""

    line: int  # its index among the block's lines
    start: int
    end: int  # where its line end is (or the text's end)
    record: list[str]


def _quoted_records(text: str) -> list[_Quoted] | None:
    r"""The lines of ``text`` (split at ``\n``) holding a quote, each read by the csv module.

    ``None`` when one leaves a quoted field open (the field holds a line break, so the line
    is not a record on its own) or is over the field limit: the block is the csv module's.
    """
    found: list[_Quoted] = []
    index = 0
    counted = 0
    position = text.find('"')
    while position >= 0:
        index += text.count("\n", counted, position)
        start = text.rfind("\n", 0, position) + 1
        end = text.find("\n", position)
        if end < 0:
            end = len(text)
        try:
            alone = list(csv.reader((text[start:end], "\n")))
        except csv.Error:
            return None
        if len(alone) != 2:  # not the record, then the blank line after it
            return None
        found.append(_Quoted(index, start, end, alone[0]))
        counted = end
        position = text.find('"', end)
    return found


def _columns_of(text: str, quoted: list[_Quoted]) -> Columns | None:
    r"""The records of non-blank lines as :class:`Columns`, or ``None`` when few are alike.

    A quoted line is first made commas alone, as many as its record has fields, and its
    record's fields then replace the empty ones. Each line end becomes a field of its own
    (``"\n"``, which no field read holds): the lines are all of the first one's width *w*
    exactly when every (*w*+1)th field is a line end. Otherwise the lines of other widths
    are found and set aside (:func:`_walk`).
    """
    text = _with_fillers(text if text[-1] == "\n" else text + "\n", quoted)
    count = text.count("\n")
    width = text.count(",", 0, text.find("\n")) + 1
    fields = text.replace("\n", ",\n,").split(",")
    fields.pop()  # the empty text after the last line end
    step = width + 1
    if len(fields) == count * step and fields[width::step].count("\n") == count:
        columns = Columns([fields[k::step] for k in range(width)], count)
    else:
        walked = _walk(fields, count, width)
        if walked is None:
            return None
        columns = walked
    return _with_quoted(columns, quoted)


def _walk(fields: list[str], count: int, width: int) -> Columns | None:
    r"""The lines of ``width`` fields as columns, the others set aside, from the fields.

    ``fields`` are the ``count`` lines' fields, each line followed by ``"\n"``. From a line
    start, the lines of ``width`` fields that follow are as many as the ``"\n"`` that lead
    every (*w*+1)th field (:func:`_alike`); the line after them is read up to its own
    ``"\n"``. Two short lines could pass for one of ``width`` fields; then fewer lines are
    found than there are: ``None`` (the block is read line by line), as when more than about
    one line in sixteen so far was set aside.
    """
    step = width + 1
    columns: list[list[str]] = [[] for _ in range(width)]
    odd: dict[int, list[str]] = {}
    at = line = 0
    while at < len(fields):
        alike = _alike(fields, at, width)
        if alike:
            stop = at + alike * step
            for k in range(width):
                columns[k] += fields[at + k : stop : step]
            at, line = stop, line + alike
        if at < len(fields):
            end = fields.index("\n", at)
            odd[line] = fields[at:end]
            at, line = end + 1, line + 1
            if len(odd) * 16 > line + 64:  # too many: give up early, not at the block's end
                return None
    if line != count:
        return None
    return Columns(columns, count, odd)


def _alike(fields: list[str], at: int, width: int) -> int:
    r"""How many lines of ``width`` fields start at ``fields[at]`` (:func:`_walk`).

    Their line ends are looked for in windows that double, so finding the next line of
    another width costs about as much as the lines before it: linear in the block.
    """
    step = width + 1
    alike = 0
    window = 16
    while True:
        start = at + alike * step + width
        ends = fields[start : start + window * step : step]
        leading = _leading(ends, "\n")
        alike += leading
        if leading < len(ends) or len(ends) < window:
            return alike
        window *= 2


def _leading(items: list[str], value: str) -> int:
    """How many of the first items equal ``value`` (C-level counts, halving the range)."""
    if items.count(value) == len(items):
        return len(items)
    low, high = 0, len(items)  # items[:low] are all value; items[low:high] are not
    while high - low > 1:
        middle = (low + high) // 2
        if items[low:middle].count(value) == middle - low:
            low = middle
        else:
            high = middle
    return low


def _with_fillers(text: str, quoted: list[_Quoted]) -> str:
    """``text`` with each quoted line made commas alone, as many as its record has fields."""
    if not quoted:
        return text
    pieces: list[str] = []
    at = 0
    for line in quoted:
        pieces += (text[at : line.start], "," * (len(line.record) - 1))
        at = line.end
    pieces.append(text[at:])
    return "".join(pieces)  # a quoted line of one field is now an empty one


def _with_quoted(columns: Columns, quoted: list[_Quoted]) -> Columns:
    """The columns with the quoted lines' records in their fillers' places."""
    odd = columns.odd
    for line in quoted:
        if line.line in odd:
            odd[line.line] = line.record
            continue
        at = columns._column_index(line.line)  # noqa: SLF001 - the module's own class
        for column, field in zip(columns.columns, line.record, strict=True):
            column[at] = field
    return columns


def _split_records(text: str, quoted: list[_Quoted], *, blank: bool) -> list[list[str]]:
    """The records of ``text``'s lines: split at commas, a quoted line's as the csv module read it.

    A blank line (there are some when ``blank``) is an empty record.
    """
    lines = text.split("\n")
    if text[-1] == "\n":
        lines.pop()  # the empty text after the last line end
    records = [line.split(",") for line in lines]
    for line in quoted:
        records[line.line] = line.record
    if blank:
        for index, line_text in enumerate(lines):
            if not line_text:
                records[index] = []
    return records


def _may_exceed_limit(text: str) -> bool:
    """Whether ``text`` may hold a field longer than the csv module's limit.

    Such a field is a run of more than ``limit`` characters without a comma or a line break,
    and any run of ``2 * half - 1`` characters or more covers a whole aligned window of
    ``half``: when every window holds a separator, no field is that long.
    """
    limit = csv.field_size_limit()
    if len(text) <= limit:
        return False
    half = max(1, limit // 2)
    for start in range(0, len(text) - half + 1, half):
        stop = start + half
        if text.find(",", start, stop) < 0 and text.find("\n", start, stop) < 0:
            return True
    return False
