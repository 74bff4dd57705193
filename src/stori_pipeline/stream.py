"""Streaming a transactions file: async bytes -> text -> CSV records -> validated batches.

The same code path serves a local file and an S3 body: anything that is an
``AsyncIterable[bytes]`` is a source. The text is read a block of lines at a time
(:mod:`stori_pipeline.csv_blocks`). Memory stays flat: one chunk of text, one block of
records, the summary buckets, and the set of accepted ids per account (SPEC §2's duplicate
check is the only state that grows with the file).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from stori_pipeline.csv_blocks import Block, BlockReader
from stori_pipeline.errors import FileRejectedError
from stori_pipeline.gc_pause import collections_deferred
from stori_pipeline.records import FileErrorCode, Rejection, RowValidator, Transaction
from stori_pipeline.summary import AccountSummaries, AccountSummary

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "ImportResult",
    "TransactionStream",
    "file_chunks",
    "summarize_stream",
]

DEFAULT_BATCH_SIZE = 500
# Records validated at a time (at most ``batch_size``): few enough that a batch's freshly
# parsed strings are still in the CPU caches while the validator goes over them column by
# column, which it does several times (with aiocsv's records, 500 ran ~10% slower than 250;
# with the block reader's columns, 250 to 1,000 ran alike).
_FEED_SIZE = 250
CHUNK_SIZE = 256 * 1024


class _DecodingErrors:
    """How many undecodable byte runs the ``stori-pipeline-escape`` handler has escaped.

    A reader compares the count before and after its own ``decode`` call: decoding is
    synchronous, so any change is its own, except that a decode on another thread at the
    same moment may show up too — which only turns on a check that was not needed. This
    costs nothing on valid UTF-8, where scanning every chunk for lone surrogates cost
    ~0.1 µs per row.
    """

    count = 0


def _escape_and_count(error: UnicodeError) -> tuple[str | bytes, int]:
    _DecodingErrors.count += 1
    return _SURROGATEESCAPE(error)


_SURROGATEESCAPE = codecs.lookup_error("surrogateescape")
codecs.register_error("stori-pipeline-escape", _escape_and_count)


@dataclass(frozen=True, slots=True, repr=False)
class ImportResult:
    """What reading one file produced. ``file_error`` is a SPEC §2 file-level code or ``None``.

    ``accounts`` are the summaries, sorted by account id: read from a file, a lazy
    :class:`~stori_pipeline.summary.AccountSummaries` that builds each summary from the
    ledger's integer buckets as it is read (it indexes, iterates and compares equal like the
    tuple of the same summaries, which it was before), so 200,000 accounts are never held as
    frozen values all at once; merged from slices, a tuple.
    """

    rows_read: int
    rows_accepted: int
    rows_rejected: int
    accounts: Sequence[AccountSummary]
    file_error: FileErrorCode | None = None
    file_error_detail: str | None = None
    file_error_line: int | None = None

    def __repr__(self) -> str:
        """Counts, not every summary.

        A file of 50,000 accounts would print millions of characters — and ``asyncio.run``
        formats the repr of the result it returns (Python 3.11, restoring its SIGINT
        handler), which had cost seconds.
        """
        error = "" if self.file_error is None else f", file_error={str(self.file_error)!r}"
        return (
            f"ImportResult(rows_read={self.rows_read}, rows_accepted={self.rows_accepted}, "
            f"rows_rejected={self.rows_rejected}, accounts=<{len(self.accounts)}>{error})"
        )

    def to_json(self, rejected: list[Rejection] | None = None) -> dict[str, object]:
        """The ``summarize --json`` object (SPEC §3)."""
        return {
            "rowsRead": self.rows_read,
            "rowsAccepted": self.rows_accepted,
            "rowsRejected": self.rows_rejected,
            "accounts": [a.to_json() for a in self.accounts],
            "rejected": [r.to_json() for r in rejected or []],
            "fileError": None if self.file_error is None else str(self.file_error),
        }

    def json_chunks(
        self, rejected: Iterable[Rejection] = (), *, chunk_chars: int = 1 << 20
    ) -> Iterator[str]:
        """``json.dumps(self.to_json(rejected), ensure_ascii=False)`` in pieces of ~``chunk_chars``.

        Each account's text is written straight from the ledger's integer buckets
        (:meth:`AccountSummaries.json_texts`): memory follows one account, not the document.
        """
        dumps = json.JSONEncoder(ensure_ascii=False).encode
        accounts = self.accounts
        texts: Iterable[str] = (
            accounts.json_texts()
            if isinstance(accounts, AccountSummaries)
            else (dumps(a.to_json()) for a in accounts)
        )
        file_error = None if self.file_error is None else str(self.file_error)
        head = (
            f'{{"rowsRead": {self.rows_read}, "rowsAccepted": {self.rows_accepted}, '
            f'"rowsRejected": {self.rows_rejected}, "accounts": ['
        )
        pieces = chain(
            (head,),
            _separated(texts),
            ('], "rejected": [',),
            _separated(dumps(r.to_json()) for r in rejected),
            (f'], "fileError": {dumps(file_error)}}}',),
        )
        buffer: list[str] = []
        size = 0
        for piece in pieces:
            buffer.append(piece)
            size += len(piece)
            if size >= chunk_chars:
                yield "".join(buffer)
                buffer.clear()
                size = 0
        yield "".join(buffer)


def _separated(texts: Iterable[str]) -> Iterator[str]:
    """The texts with ``", "`` between them (a JSON array's items, as ``json.dumps`` writes)."""
    separator = ""
    for text in texts:
        yield separator + text
        separator = ", "


async def file_chunks(path: str | Path, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
    """Read a local file as an async byte source.

    A blocking read of one chunk from a local disk is shorter than a thread hop would be.
    """
    with Path(path).open("rb") as handle:  # noqa: ASYNC230 - see the docstring
        while chunk := handle.read(chunk_size):
            yield chunk


class _TextSource:
    """A byte source decoded as UTF-8, incrementally, one chunk of text at a time.

    Bytes that are not UTF-8 become lone surrogates (``surrogateescape``) instead of failing the
    file; the first time a chunk holds one, the validator starts checking rows for them
    (SPEC §2 ``invalid_encoding``), so clean files never pay for that check.
    """

    def __init__(self, chunks: AsyncIterable[bytes], on_undecodable: Callable[[], None]) -> None:
        self._chunks = aiter(chunks)
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="stori-pipeline-escape")
        self._on_undecodable = on_undecodable

    async def aclose(self) -> None:
        """Close the chunk iterator, when it can be closed (an async generator can)."""
        close = getattr(self._chunks, "aclose", None)
        if close is not None:
            await close()

    async def blocks(self, reader: BlockReader) -> AsyncIterator[Block]:
        """The records of the text, read by ``reader``; the last block is the text's end."""
        async for text in self._texts():
            for block in reader.feed(text):
                yield block
                if block.error is not None:
                    return
        yield reader.finish()

    async def _texts(self) -> AsyncIterator[str]:
        async for chunk in self._chunks:
            yield self._decode(chunk)
        yield self._decode(b"", final=True)

    def _decode(self, chunk: bytes, *, final: bool = False) -> str:
        errors = _DecodingErrors.count
        text = self._decoder.decode(chunk, final)
        if _DecodingErrors.count != errors:
            self._on_undecodable()
        return text


class TransactionStream:
    """Async iterator over batches of accepted :class:`Transaction` values of one file.

    After iteration ends, :meth:`result` gives the counts and per-account summaries. A
    file-level rejection ends iteration without a batch and sets ``result().file_error``; it
    does not raise, because no retry can fix a file.

    Args:
        chunks: the file's bytes, in any chunking.
        account: the account of every row when the file has no ``AccountId`` column.
        on_reject: called with each rejected row, in file order.
        batch_size: accepted rows per batch (the last one may be shorter).
        collect: ``False`` to only summarize (no ``Transaction`` values are built).
        line_offset: added to every line number: the object's line before the first record
            when ``chunks`` are a header followed by a later slice of the object
            (:mod:`stori_pipeline.scaleout`).
        duplicate_lines: lines (with the offset) of rows to reject as ``duplicate_id`` although
            this read sees no earlier row with their id: an earlier slice accepted it.
    """

    def __init__(  # noqa: PLR0913 - keyword-only options of one reader
        self,
        chunks: AsyncIterable[bytes],
        *,
        account: str | None = None,
        on_reject: Callable[[Rejection], object] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        collect: bool = True,
        line_offset: int = 0,
        duplicate_lines: Collection[int] = (),
    ) -> None:
        self._chunks = chunks
        self._line_offset = line_offset
        self._duplicate_lines = frozenset(duplicate_lines)
        self._account = account
        self._on_reject = on_reject or (lambda _rejection: None)
        self._batch_size = batch_size
        self._collect = collect
        self._validator: RowValidator | None = None
        self._error: FileRejectedError | None = None
        self._finished = False
        self._undecodable = False
        self._malformed: FileRejectedError | None = None
        self._accepted: list[Transaction] = []  # accepted rows not yielded yet

    @property
    def rows_read(self) -> int:
        """Data records read so far (for progress reports)."""
        return 0 if self._validator is None else self._validator.rows_read

    def _undecodable_seen(self) -> None:
        self._undecodable = True
        if self._validator is not None:
            self._validator.check_encoding = True

    async def __aiter__(self) -> AsyncIterator[list[Transaction]]:
        source = _TextSource(self._chunks, self._undecodable_seen)
        try:
            async for batch in self._batches(source):
                yield batch
        finally:
            # Close the byte source now, however reading ended (a rejected header, a break
            # in the caller): left to the garbage collector, an open file or S3 body may
            # outlive the event loop.
            await source.aclose()

    async def _batches(self, source: _TextSource) -> AsyncIterator[list[Transaction]]:
        reader = BlockReader()
        blocks = source.blocks(reader)
        validator: RowValidator | None = None
        async for block in blocks:
            records, ends = block.records, block.ends
            if validator is None:
                first = next((i for i, record in enumerate(records) if record), None)
                if first is None:  # blank lines so far
                    if block.error is not None:
                        self._fail(_malformed(block.error, reader.line + 1))
                        return
                    continue
                validator = self._validator_for(records[first], ends[first])
                if validator is None:
                    return
                records, ends = records[first + 1 :], ends[first + 1 :]
            async for batch in self._feed_block(validator, records, ends, blank=block.blank):
                yield batch
            if block.error is not None:
                # Past the csv module's field limit (131,072 characters) — in practice an
                # unterminated quote swallowing the rest of the file. The rows before it were
                # read; nothing after it can be trusted, so the file is rejected from here.
                self._malformed = _malformed(block.error, reader.line + 1 + self._line_offset)
                break
        if validator is None and self._error is None:
            self._fail(FileRejectedError(FileErrorCode.EMPTY_FILE, "the file has no header"))
            return
        if self._accepted:
            yield self._accepted
            self._accepted = []
        self._finished = True

    def _validator_for(self, header: list[str], line: int) -> RowValidator | None:
        """The validator of a file with this header (on this line), or ``None``: refused."""
        try:
            validator = RowValidator(
                header, default_account=self._account, on_reject=self._on_reject
            )
        except FileRejectedError as exc:
            # The header is what is wrong (bad_header, no_account): say on which line it is.
            self._fail(FileRejectedError(exc.code, exc.detail, line=line))
            return None
        validator.check_encoding = self._undecodable
        validator.duplicate_lines = self._duplicate_lines
        self._validator = validator
        return validator

    async def _feed_block(
        self,
        validator: RowValidator,
        records: Sequence[list[str]],
        ends: Sequence[int],
        *,
        blank: bool,
    ) -> AsyncIterator[list[Transaction]]:
        """Validate a block's records, ``_FEED_SIZE`` at a time; yield full batches."""
        size, collect = self._batch_size, self._collect
        feed_size = min(size, _FEED_SIZE)
        lines = _shifted(ends, self._line_offset)
        accepted = self._accepted
        for start in range(0, len(records), feed_size):
            batch = records[start : start + feed_size]
            batch_lines = lines[start : start + feed_size]
            if blank:  # blank lines: lines, but not rows
                kept = [i for i, record in enumerate(batch) if record]
                batch = [batch[i] for i in kept]
                batch_lines = [batch_lines[i] for i in kept]
            if batch:
                accepted += validator.feed(batch, batch_lines, collect=collect)
            while len(accepted) >= size:
                yield accepted[:size]
                del accepted[:size]

    def _fail(self, error: FileRejectedError) -> None:
        self._error = error
        self._finished = True

    def result(self) -> ImportResult:
        """Counts and summaries; only valid once iteration has ended."""
        if not self._finished:
            raise RuntimeError("TransactionStream.result() called before the stream was read")
        if self._error is not None or self._validator is None:
            error = self._error
            return ImportResult(
                0,
                0,
                0,
                (),
                FileErrorCode(error.code) if error else None,
                error.detail if error else None,
                error.line if error else None,
            )
        v = self._validator
        if self._malformed is not None:
            # The counts say how far the file was read; no summary of a partial file.
            return ImportResult(
                v.rows_read,
                v.rows_accepted,
                v.rows_rejected,
                (),
                FileErrorCode.MALFORMED_CSV,
                self._malformed.detail,
                self._malformed.line,
            )
        return ImportResult(v.rows_read, v.rows_accepted, v.rows_rejected, v.ledger.summaries())


def _malformed(error: Exception, line: int) -> FileRejectedError:
    return FileRejectedError(FileErrorCode.MALFORMED_CSV, f"line {line}: {error}", line=line)


def _shifted(lines: Sequence[int], offset: int) -> Sequence[int]:
    """Line numbers moved down by ``offset`` (a range stays a range)."""
    if not offset:
        return lines
    if isinstance(lines, range):
        return range(lines.start + offset, lines.stop + offset)
    return [line + offset for line in lines]


async def summarize_stream(
    chunks: AsyncIterable[bytes],
    *,
    account: str | None = None,
    on_reject: Callable[[Rejection], object] | None = None,
) -> ImportResult:
    """Read a whole file and return its summary, without building per-row values."""
    stream = TransactionStream(chunks, account=account, on_reject=on_reject, collect=False)
    with collections_deferred(young=True):  # the ledger's buckets are no garbage to look for
        async for _ in stream:
            pass
    return stream.result()
