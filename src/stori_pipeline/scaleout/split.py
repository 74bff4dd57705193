r"""Cutting one CSV object into byte ranges that start on true record boundaries (pure).

A quoted field may hold line breaks, so a byte offset alone does not say where a record
starts. Each range is scanned on its own (in parallel, :func:`scan_window`) under every parser
state it could start in; a tiny sequential step (:func:`link`) then follows the one true
chain from the header onwards and gives each range the records that *begin* in it and the
physical line number before its first record. Scanning is exact because it runs the csv
module's own parser, not a model of it:

* The bytes are decoded as Latin-1, one character per byte, so parser positions are byte
  offsets. Only ASCII bytes (``"``, ``,``, ``\r``, ``\n``) shape records, and no byte of a
  multibyte UTF-8 character is ASCII, so the records' boundaries are those of the UTF-8 text.
* A parser state is entered by a prefix: ``""`` (at the start of a record), ``","`` (at the
  start of a later field), ``"x"`` (inside an unquoted field), ``'"'`` (inside a quoted
  field) and ``'""'`` (just after a quote inside a quoted field). The byte before the range
  says which states are possible.
* Lines are split at ``\r\n``, ``\r`` and ``\n`` (what the csv module counts as a line), and a
  record ends after the line on which the reader completes it; each line holds exactly one
  terminator, so the number of lines is the number of line terminators.
* A cut never falls between ``\r`` and ``\n`` (:func:`adjust_cut` moves it past the ``\n``).

A field the real reader would refuse (over 131,072 characters, :data:`FIELD_LIMIT_BYTES`
bytes or more can only be that) ends a hypothesis; when the true chain breaks there, the
range is marked ``may_break`` and holds the rest of the object: the reader finds the same
error there and the file is rejected as ``malformed_csv`` exactly as a single read would.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, islice

__all__ = [
    "FIELD_LIMIT_BYTES",
    "Candidate",
    "RangeScan",
    "Slice",
    "SplitError",
    "adjust_cut",
    "count_lines",
    "cut_points",
    "find_header_end",
    "hypotheses_after",
    "link",
    "scan_window",
]

CR, LF, COMMA, QUOTE = 0x0D, 0x0A, 0x2C, 0x22
# The csv module refuses a field over 131,072 characters; a UTF-8 character is at most 4
# bytes, so a field of this many bytes or more is refused by the real reader too.
FIELD_LIMIT_BYTES = 4 * 131_072 + 4
_LINE = re.compile(r"[^\r\n]*+(?:\r\n|\r|\n)|[^\r\n]++\Z")
# How a hypothesis enters the parser: the text put before the range's first byte.
_PREFIX = {"record": "", "field": ",", "unquoted": "x", "quoted": '"', "closed": '""'}


class SplitError(ValueError):
    """The scans of consecutive ranges do not agree (a bug, never a property of the input)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """Where records fall in one range if the parser enters it in ``hypothesis``'s state.

    ``first`` is the first record boundary at or after the range's start, ``lines`` the line
    terminators in ``[start, first)``, and ``next`` the first record boundary at or after the
    range's end (the object's size at its end), ``None`` when the parse broke before it.
    """

    hypothesis: str
    first: int
    lines: int
    next: int | None

    def to_json(self) -> dict[str, object]:
        """A JSON-ready form (``from_json`` reads it back)."""
        return {"h": self.hypothesis, "first": self.first, "lines": self.lines, "next": self.next}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Candidate:
        """Inverse of :meth:`to_json`."""
        nxt = data["next"]
        return cls(
            str(data["h"]),
            int(str(data["first"])),
            int(str(data["lines"])),
            None if nxt is None else int(str(nxt)),
        )


@dataclass(frozen=True, slots=True)
class RangeScan:
    """One range's scan: its bytes ``[start, end)``, their line terminators, and candidates."""

    index: int
    start: int
    end: int
    lines: int
    candidates: tuple[Candidate, ...]

    def to_json(self) -> dict[str, object]:
        """A JSON-ready form (small: one entry per hypothesis)."""
        return {
            "index": self.index,
            "start": self.start,
            "end": self.end,
            "lines": self.lines,
            "candidates": [c.to_json() for c in self.candidates],
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> RangeScan:
        """Inverse of :meth:`to_json`."""
        candidates = data["candidates"]
        if not isinstance(candidates, list):
            raise SplitError("a range scan without candidates")
        return cls(
            int(str(data["index"])),
            int(str(data["start"])),
            int(str(data["end"])),
            int(str(data["lines"])),
            tuple(Candidate.from_json(c) for c in candidates),
        )


@dataclass(frozen=True, slots=True)
class Slice:
    """The records of one range: bytes ``[start, end)`` of the object, from a boundary.

    ``line_offset`` turns the line numbers of a read of ``header + object[start:end]`` into
    the object's own (add it); ``may_break`` marks the range where the object's CSV breaks
    (it then runs to the end of the object and no later range holds a record).
    """

    index: int
    start: int
    end: int
    line_offset: int
    may_break: bool = False

    @property
    def empty(self) -> bool:
        """No record begins in this range."""
        return self.start >= self.end

    def to_json(self) -> dict[str, object]:
        """A JSON-ready form; also a Distributed Map item (far below 256 KB)."""
        return {
            "index": self.index,
            "start": self.start,
            "end": self.end,
            "lineOffset": self.line_offset,
            "mayBreak": self.may_break,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Slice:
        """Inverse of :meth:`to_json`."""
        return cls(
            int(str(data["index"])),
            int(str(data["start"])),
            int(str(data["end"])),
            int(str(data["lineOffset"])),
            bool(data.get("mayBreak", False)),
        )


def count_lines(data: bytes) -> int:
    r"""Line terminators in ``data`` as the csv module counts them (``\r\n`` once)."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def cut_points(header_end: int, size: int, range_bytes: int) -> list[tuple[int, int]]:
    """Nominal ranges ``[start, end)`` of ``range_bytes`` covering the records after the header."""
    if range_bytes < 1:
        raise ValueError("range_bytes must be positive")
    return [
        (start, min(start + range_bytes, size)) for start in range(header_end, size, range_bytes)
    ]


def adjust_cut(position: int, before: int | None, at: int | None) -> int:
    r"""Move a cut that falls between ``\r`` and ``\n`` past the ``\n``.

    ``before`` and ``at`` are the bytes at ``position - 1`` and ``position`` (``None`` past
    either end). Both ranges that share a cut call this with the same bytes, so they agree.
    """
    return position + 1 if before == CR and at == LF else position


def hypotheses_after(before: int | None) -> tuple[str, ...]:
    """The parser states possible after the byte ``before`` (``None``: the header's end).

    The first is scanned in full; the others usually meet it within a record or two.
    """
    if before is None or before in (CR, LF):
        return ("record", "quoted")
    if before == COMMA:
        return ("field", "quoted")
    if before == QUOTE:
        return ("closed", "quoted", "unquoted")
    return ("unquoted", "quoted")


def _boundaries(
    lines: Sequence[str], ends: Sequence[int], hypothesis: str, *, complete: bool
) -> Iterator[tuple[int, int] | None]:
    """Record boundaries as ``(lines consumed, offset)``; ``None`` when more bytes are needed.

    Raises ``csv.Error`` where the real reader would (a field over the limit).
    """
    if hypothesis == "record":
        yield (0, 0)
    if not lines:
        if not complete:
            yield None
        return
    prefix = _PREFIX[hypothesis]
    reader = csv.reader(chain((prefix + lines[0],), islice(lines, 1, None)))
    last = len(lines)
    # A window that stops inside a line, or mid-file inside a record, cannot say where that
    # record ends: the reader takes the end of its input as the end of the record.
    partial_tail = not complete and not lines[-1].endswith(("\r", "\n"))
    for _ in reader:
        consumed = reader.line_num
        if consumed == last and not complete:
            yield None
            return
        if consumed == last and partial_tail:
            yield None
            return
        yield (consumed, ends[consumed - 1])


def scan_window(  # noqa: C901, PLR0912, PLR0913 - one walk per hypothesis; keyword-only range
    window: bytes,
    *,
    index: int,
    start: int,
    end: int,
    size: int,
    before: int | None,
) -> RangeScan | None:
    """Scan the range ``[start, end)`` given ``window`` = the object's bytes from ``start``.

    ``window`` must reach at least ``end``; ``before`` is the byte at ``start - 1``. Returns
    ``None`` when the window stops before every hypothesis has found its first boundary at or
    after ``end`` (call again with a longer window).
    """
    if len(window) < end - start:
        raise ValueError("the window must reach the end of the range")
    complete = start + len(window) >= size
    text = window.decode("latin-1")
    lines = _LINE.findall(text)
    ends = list(accumulate(map(len, lines)))
    limit = end - start
    hypotheses = hypotheses_after(before)
    main_flags: bytearray | None = None
    main_next: int | None = None
    candidates: list[Candidate] = []
    old_limit = csv.field_size_limit(FIELD_LIMIT_BYTES)
    try:
        for number, hypothesis in enumerate(hypotheses):
            is_main = number == 0
            flags = bytearray(len(lines) + 1) if is_main else None
            first: tuple[int, int] | None = None
            nxt: int | None = None
            broke = False
            try:
                for found in _boundaries(lines, ends, hypothesis, complete=complete):
                    if found is None:
                        return None
                    consumed, offset = found
                    if first is None:
                        first = found
                    if offset >= limit:
                        nxt = offset
                        break
                    if flags is not None:
                        flags[consumed] = 1
                    elif main_flags is not None and main_flags[consumed]:
                        nxt = main_next  # the same boundary: the same records from here
                        broke = main_next is None
                        break
                else:
                    if not complete:
                        return None
                    # The end of the object ends its last record (and is a boundary).
                    nxt = len(window)
                    if first is None:
                        first = (len(lines), len(window))
            except csv.Error:
                broke = True
            if first is None:
                if not broke:
                    return None
                # Broke before completing a record: the range holds no boundary we can see.
                first = (len(lines), len(window))
            if is_main:
                main_flags, main_next = flags, (None if broke else nxt)
            candidates.append(
                Candidate(
                    hypothesis,
                    start + first[1],
                    first[0],
                    None if broke or nxt is None else start + nxt,
                )
            )
    finally:
        csv.field_size_limit(old_limit)
    return RangeScan(index, start, end, count_lines(window[:limit]), tuple(candidates))


def find_header_end(window: bytes, *, size: int) -> tuple[int, int] | None:
    """Where the header record ends: ``(offset after it, line terminators before it)``.

    Blank lines before the header are skipped as the reader skips them. ``None`` when the
    window is too short to tell, when there is no header, or when the header does not parse
    (the caller then reads the file the single way to get the exact file-level error).
    """
    complete = len(window) >= size
    lines = _LINE.findall(window.decode("latin-1"))
    if not lines:
        return None
    ends = list(accumulate(map(len, lines)))
    reader = csv.reader(iter(lines))
    last = len(lines)
    partial_tail = not lines[-1].endswith(("\r", "\n"))
    try:
        for record in reader:
            consumed = reader.line_num
            if consumed == last and (not complete or partial_tail):
                return None
            if record:
                return ends[consumed - 1], consumed
    except csv.Error:
        return None
    return None


def link(
    scans: Sequence[RangeScan], *, header_end: int, header_lines: int, size: int
) -> list[Slice]:
    """Follow the true chain of record boundaries through the scans, in order.

    The first range starts at the header's end, a known boundary; each range's true start is
    the previous range's ``next`` under its true hypothesis, and the true hypothesis is the
    one whose ``first`` is that start. A range that a record spans entirely is empty.
    """
    slices: list[Slice] = []
    boundary: int | None = header_end
    lines_before = header_lines  # line terminators before each range's start
    for scan in sorted(scans, key=lambda s: s.index):
        if boundary is None or boundary >= scan.end:
            # Broken earlier, or a record from an earlier range spans this one.
            at = size if boundary is None else boundary
            slices.append(Slice(scan.index, at, at, 0))
            lines_before += scan.lines
            continue
        match = next((c for c in scan.candidates if c.first == boundary), None)
        if match is None:
            raise SplitError(
                f"range {scan.index}: no scan of [{scan.start}, {scan.end}) starts at the "
                f"boundary {boundary}"
            )
        offset = lines_before + match.lines - header_lines
        if match.next is None:
            slices.append(Slice(scan.index, boundary, size, offset, may_break=True))
            boundary = None
        else:
            slices.append(Slice(scan.index, boundary, match.next, offset))
            boundary = match.next
        lines_before += scan.lines
    return slices


def scan_range(
    data: bytes, index: int, start: int, end: int, *, window: int = 1 << 16
) -> RangeScan:
    """Scan one nominal range of an object held in memory (tests, and small objects).

    Adjusts both cuts (:func:`adjust_cut`) and grows the window past ``end`` until the scan
    can tell; the distributed step does the same with ranged S3 reads.
    """
    size = len(data)

    def byte(position: int) -> int | None:
        return data[position] if 0 <= position < size else None

    start = adjust_cut(start, byte(start - 1), byte(start))
    end = max(start, adjust_cut(end, byte(end - 1), byte(end)))
    extra = window
    while True:
        scan = scan_window(
            data[start : end + extra],
            index=index,
            start=start,
            end=end,
            size=size,
            before=byte(start - 1) if index else None,
        )
        if scan is not None:
            return scan
        extra *= 2


def split_bytes(
    data: bytes, *, header_end: int, header_lines: int, range_bytes: int
) -> list[Slice]:
    """Every range's slice of an object held in memory: scan each, then :func:`link`."""
    scans = [
        scan_range(data, index, start, end)
        for index, (start, end) in enumerate(cut_points(header_end, len(data), range_bytes))
    ]
    return link(scans, header_end=header_end, header_lines=header_lines, size=len(data))
