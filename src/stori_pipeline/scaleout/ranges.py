"""Reading one slice of an object, and merging the slices' results (no AWS).

The distributed path reads each slice as ``header + object[start:end]`` through the very
:class:`~stori_pipeline.stream.TransactionStream` the single path uses, with the slice's line
offset, so every rule, code and line number is the single path's. Two passes per slice:

1. **fingerprint**: which (account, Id) pairs the slice accepts, as 128-bit fingerprints with
   their lines, partitioned so that a duplicate across slices meets itself in one partition;
2. **commit**: the same read with the lines that lost to an earlier slice (:func:`losers`)
   rejected as ``duplicate_id`` (SPEC §2: the first *accepted* occurrence in the file wins).

:func:`merge_results` adds the slices' counts and summaries in slice order; a
``malformed_csv`` in one slice ends the file there, as a single read ends.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

from stori_pipeline.records import FileErrorCode
from stori_pipeline.scaleout.split import find_header_end
from stori_pipeline.stream import ImportResult, TransactionStream, summarize_stream
from stori_pipeline.summary import AccountSummary

__all__ = [
    "FINGERPRINT_BYTES",
    "HeaderPlan",
    "SliceCounts",
    "chunks_of",
    "decode_fingerprints",
    "encode_fingerprints",
    "fingerprint",
    "fingerprint_slice",
    "losers",
    "merge_results",
    "plan_header",
    "with_header",
]

FINGERPRINT_BYTES = 16
# Past this, a header that still has not ended is read the single way for its exact error.
HEADER_WINDOW_LIMIT = 8 * 1024 * 1024


async def chunks_of(data: bytes, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
    """An in-memory byte source (tests, and the plan's header window)."""
    for start in range(0, len(data), chunk_size):
        yield data[start : start + chunk_size]


async def with_header(header: bytes, body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    r"""The header's bytes, then the slice's: what one slice's read is given.

    A header ending in a lone ``\r`` gets its ``\n``: a slice that starts with ``\n`` (a
    blank line after a record ending in ``\n``) would otherwise join it into one ``\r\n``
    and lose a line. In the object itself a ``\n`` never follows the header's ``\r`` (it
    would belong to the header), so for the first slice this changes nothing either.
    """
    if header.endswith(b"\r"):
        header += b"\n"
    if header:
        yield header
    async for chunk in body:
        yield chunk


@dataclass(frozen=True, slots=True)
class HeaderPlan:
    """Where the object's header ends, or the file-level error that rejects the whole object.

    ``end`` is the offset of the first data record and ``lines`` the line terminators before
    it; ``file_error`` (with ``detail``) is set when the object is rejected as a whole, and
    then no range is read (SPEC §2: nothing is written).
    """

    end: int
    lines: int
    file_error: str | None = None
    detail: str | None = None
    error_line: int | None = None

    def to_json(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "headerEnd": self.end,
            "headerLines": self.lines,
            "fileError": self.file_error,
            "fileErrorDetail": self.detail,
            "fileErrorLine": self.error_line,
        }


async def plan_header(window: bytes, *, size: int, account: str | None) -> HeaderPlan | None:
    """The :class:`HeaderPlan` of an object whose first bytes are ``window``.

    Returns ``None`` when the window is too short to tell (read a longer one). The header is
    judged by the single path's own reader over exactly the header's bytes, so ``bad_header``,
    ``no_account``, ``empty_file`` and a broken header are the single path's.
    """
    found = find_header_end(window, size=size)
    if found is None:
        complete = len(window) >= size
        if not complete and len(window) < HEADER_WINDOW_LIMIT:
            return None
        # No header, or one that does not parse: the single read says why.
        result = await summarize_stream(chunks_of(window), account=account)
        if result.file_error is None:
            return HeaderPlan(size, 0, str(FileErrorCode.MALFORMED_CSV), "the header never ends")
        return HeaderPlan(
            size, 0, str(result.file_error), result.file_error_detail, result.file_error_line
        )
    end, lines = found
    result = await summarize_stream(chunks_of(window[:end]), account=account)
    if result.file_error is not None:
        return HeaderPlan(
            end, lines, str(result.file_error), result.file_error_detail, result.file_error_line
        )
    return HeaderPlan(end, lines)


def fingerprint(account_id: str, transaction_id: str) -> bytes:
    """128 bits naming an (account, Id) pair; NUL cannot occur in a valid account id."""
    text = f"{account_id}\0{transaction_id}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=FINGERPRINT_BYTES).digest()


def encode_fingerprints(fingerprints: Sequence[bytes], lines: Sequence[int]) -> bytes:
    """One partition of one slice: the fingerprints, then their lines (int64, native order)."""
    return b"".join(fingerprints) + array("q", lines).tobytes()


def decode_fingerprints(blob: bytes) -> tuple[list[bytes], array[int]]:
    """Inverse of :func:`encode_fingerprints`."""
    count, rest = divmod(len(blob), FINGERPRINT_BYTES + 8)
    if rest:
        raise ValueError("a fingerprint part of the wrong length")
    cut = count * FINGERPRINT_BYTES
    prints = [blob[i : i + FINGERPRINT_BYTES] for i in range(0, cut, FINGERPRINT_BYTES)]
    lines = array("q")
    lines.frombytes(blob[cut:])
    return prints, lines


def losers(parts: Iterable[tuple[int, bytes]]) -> dict[int, list[int]]:
    """Lines that lose to an earlier slice, per slice, from one partition's parts in order.

    ``parts`` are ``(slice index, encoded part)`` in slice order. Each slice accepted each of
    its pairs once; a pair an earlier slice accepted too loses (a later slice's lines are all
    later in the file).
    """
    seen: set[bytes] = set()
    lost: dict[int, list[int]] = {}
    for index, blob in parts:
        prints, lines = decode_fingerprints(blob)
        for print_, line in zip(prints, lines, strict=True):
            if print_ in seen:
                lost.setdefault(index, []).append(line)
            else:
                seen.add(print_)
    return lost


@dataclass(frozen=True, slots=True)
class SliceCounts:
    """What reading one slice counted (``file_error`` only ever ``malformed_csv`` here)."""

    rows_read: int
    rows_accepted: int
    rows_rejected: int
    file_error: str | None = None
    detail: str | None = None
    summaries: Sequence[AccountSummary] = field(default=())
    error_line: int | None = None

    @classmethod
    def of(cls, result: ImportResult) -> SliceCounts:
        """The counts of a slice's :class:`ImportResult`."""
        return cls(
            result.rows_read,
            result.rows_accepted,
            result.rows_rejected,
            None if result.file_error is None else str(result.file_error),
            result.file_error_detail,
            result.accounts,
            result.file_error_line,
        )

    def to_json(self) -> dict[str, object]:
        """A JSON-ready form (summaries in SPEC §3's shape)."""
        return {
            "rowsRead": self.rows_read,
            "rowsAccepted": self.rows_accepted,
            "rowsRejected": self.rows_rejected,
            "fileError": self.file_error,
            "fileErrorDetail": self.detail,
            "summaries": [s.to_json() for s in self.summaries],
            "fileErrorLine": self.error_line,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> SliceCounts:
        """Inverse of :meth:`to_json`."""
        summaries = data.get("summaries") or []
        if not isinstance(summaries, list):
            raise TypeError("summaries must be a list")
        error, detail = data.get("fileError"), data.get("fileErrorDetail")
        return cls(
            int(str(data["rowsRead"])),
            int(str(data["rowsAccepted"])),
            int(str(data["rowsRejected"])),
            None if error is None else str(error),
            None if detail is None else str(detail),
            tuple(AccountSummary.from_json(s) for s in summaries),
            None if data.get("fileErrorLine") is None else int(str(data["fileErrorLine"])),
        )


async def fingerprint_slice(
    chunks: AsyncIterable[bytes], *, account: str | None, line_offset: int, partitions: int
) -> tuple[SliceCounts, list[bytes]]:
    """Read one slice (header included) and fingerprint what it accepts, per partition."""
    prints: list[list[bytes]] = [[] for _ in range(partitions)]
    lines: list[list[int]] = [[] for _ in range(partitions)]
    stream = TransactionStream(chunks, account=account, line_offset=line_offset)
    async for batch in stream:
        for transaction in batch:
            print_ = fingerprint(transaction.account_id, transaction.transaction_id)
            part = int.from_bytes(print_[:4], "big") % partitions
            prints[part].append(print_)
            lines[part].append(transaction.line)
    counts = SliceCounts.of(stream.result())
    # The summaries are the commit pass's; the fingerprint pass only needs the counts.
    counts = SliceCounts(
        counts.rows_read,
        counts.rows_accepted,
        counts.rows_rejected,
        counts.file_error,
        counts.detail,
        error_line=counts.error_line,
    )
    return counts, [encode_fingerprints(p, n) for p, n in zip(prints, lines, strict=True)]


def merge_results(parts: Sequence[SliceCounts]) -> ImportResult:
    """The whole file's result from its slices' results, in slice order."""
    read = accepted = rejected = 0
    merged: dict[str, AccountSummary] = {}
    for part in parts:
        read += part.rows_read
        accepted += part.rows_accepted
        rejected += part.rows_rejected
        if part.file_error is not None:
            # As a single read: the counts say how far the file was read; no summaries.
            return ImportResult(
                read,
                accepted,
                rejected,
                (),
                FileErrorCode(part.file_error),
                part.detail,
                part.error_line,
            )
        for summary in part.summaries:
            known = merged.get(summary.account_id)
            merged[summary.account_id] = summary if known is None else known.merge(summary)
    accounts = tuple(merged[name] for name in sorted(merged))
    return ImportResult(read, accepted, rejected, accounts)
