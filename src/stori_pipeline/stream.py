"""Streaming a transactions file: async bytes -> text -> aiocsv records -> validated batches.

The same code path serves a local file and an S3 body: anything that is an
``AsyncIterable[bytes]`` is a source. Memory stays flat: one chunk of text, one batch of
records, the summary buckets, and the set of accepted ids per account (SPEC §2's duplicate
check is the only state that grows with the file).
"""

from __future__ import annotations

import codecs
import csv
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
from itertools import accumulate, chain
from pathlib import Path

from aiocsv import AsyncReader

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
# parsed lists and strings are still in the CPU caches while the validator goes over them
# column by column, which it does several times. 500 at a time ran ~10% slower than 250.
_FEED_SIZE = 250
CHUNK_SIZE = 256 * 1024
# Enough of the text's end to hold its last field (the csv module's limit is 131,072
# characters, and a quoted field's raw text doubles its quotes).
_TAIL_CHARS = 2 * 131_072 + 8


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
    r"""The ``read(size)`` object aiocsv wants, decoding UTF-8 incrementally.

    Bytes that are not UTF-8 become lone surrogates (``surrogateescape``) instead of failing the
    file; the first time a chunk holds one, the validator starts checking rows for them
    (SPEC §2 ``invalid_encoding``), so clean files never pay for that check.

    A final lone ``\r`` makes aiocsv drop the last record, so a ``\n`` is added here, where
    it costs nothing per row (``\r\n`` ends the same line). The other end-of-text quirk, a
    last record without a line break counted one line short, is :func:`_batch_lines`'s, told
    by ``unterminated``.
    """

    def __init__(self, chunks: AsyncIterable[bytes], on_undecodable: Callable[[], None]) -> None:
        self._chunks = aiter(chunks)
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="stori-pipeline-escape")
        self._on_undecodable = on_undecodable
        self._last = ""
        self._tail = ""  # the text's last characters (see ends_in_open_quote)
        self.done = False

    @property
    def unterminated(self) -> bool:
        """The text has ended, and not with a line break."""
        return self.done and self._last not in ("", "\n")

    def ends_in_open_quote(self, last_field: str) -> bool:
        """Whether the text ended inside the open quoted field ``last_field``.

        Only asked when the last record's last field ends in a line break, so that field was
        quoted. Closed, the text ends with the field's opening quote (at the start of a
        field: after a delimiter, a line break or nothing), its escaped content, the closing
        quote and the record's line break; left open, with the opening quote and the content
        alone. When the text fits the closed form, the field is closed: an open field would
        need the quote before the last line break to open it, yet that quote follows a line
        break inside the same field.
        """
        raw = '"' + last_field.replace('"', '""')
        tail = self._tail

        def after_field_start(length: int) -> bool:
            return length == len(tail) or tail[-length - 1] in ",\r\n"

        for ending in ("\r\n", "\n", "\r"):
            if tail.endswith(raw + '"' + ending) and after_field_start(len(raw) + 1 + len(ending)):
                return False
        return tail.endswith(raw) and after_field_start(len(raw))

    async def aclose(self) -> None:
        """Close the chunk iterator, when it can be closed (an async generator can)."""
        close = getattr(self._chunks, "aclose", None)
        if close is not None:
            await close()

    async def read(self, _size: int) -> str:
        while not self.done:
            errors = _DecodingErrors.count
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self.done = True
                text = self._decoder.decode(b"", final=True)
                if (text[-1:] or self._last) == "\r":
                    text += "\n"
            else:
                text = self._decoder.decode(chunk)
            if _DecodingErrors.count != errors:
                self._on_undecodable()
            if text:
                self._last = text[-1]
                self._tail = (self._tail + text)[-_TAIL_CHARS:]
                return text
        return ""


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

    async def _batches(  # noqa: C901 - one loop
        self, source: _TextSource
    ) -> AsyncIterator[list[Transaction]]:
        reader = AsyncReader(source)
        # AsyncReader.__anext__ is a Python coroutine around aiocsv's C parser, and its
        # line_num a Python property: iterating the parser itself saves both on every row
        # (~20% of the read time). Any aiocsv without that attribute gets the public path.
        parser = getattr(reader, "_parser", reader)
        records = aiter(parser)
        header: list[str] = []
        blank_lines = 0
        try:
            async for record in records:
                if record:
                    header = record
                    break
                blank_lines += 1
        except csv.Error as exc:
            detail = f"line {blank_lines + 1}: {exc}"
            self._fail(FileRejectedError(FileErrorCode.MALFORMED_CSV, detail, line=blank_lines + 1))
            return
        if not header:
            self._fail(FileRejectedError(FileErrorCode.EMPTY_FILE, "the file has no header"))
            return
        try:
            validator = RowValidator(
                header, default_account=self._account, on_reject=self._on_reject
            )
        except FileRejectedError as exc:
            # The header is what is wrong (bad_header, no_account): say on which line it is.
            header_line = blank_lines + _record_lines(header)
            self._fail(FileRejectedError(exc.code, exc.detail, line=header_line))
            return
        validator.check_encoding = self._undecodable
        validator.duplicate_lines = self._duplicate_lines
        self._validator = validator
        collect, size = self._collect, self._batch_size
        feed_size = min(size, _FEED_SIZE)
        # The loop below does nothing per record but keep it: line numbers are worked out
        # once per batch (_batch_lines), and blank lines dropped then (_feed_batch).
        # The line the last record read ends on.
        line = blank_lines + _record_lines(header) + self._line_offset
        counted = parser.line_num
        batch: list[list[str]] = []
        accepted: list[Transaction] = []
        error: csv.Error | None = None
        try:
            async for record in records:
                batch.append(record)
                if len(batch) >= feed_size:
                    taken, line = _feed_batch(
                        validator,
                        batch,
                        start=line,
                        counted=parser.line_num - counted,
                        source=source,
                        collect=collect,
                    )
                    accepted += taken
                    counted, batch = parser.line_num, []
                    if len(accepted) >= size:
                        yield accepted[:size]
                        del accepted[:size]
        except csv.Error as exc:
            error = exc
        if batch:
            taken, line = _feed_batch(
                validator,
                batch,
                start=line,
                counted=parser.line_num - counted,
                source=source,
                collect=collect,
            )
            accepted += taken
        if error is not None:
            # Past the csv module's field limit (131,072 characters) — in practice an
            # unterminated quote swallowing the rest of the file. The rows before it were
            # read; nothing after it can be trusted, so the file is rejected from here.
            self._malformed = FileRejectedError(
                FileErrorCode.MALFORMED_CSV, f"line {line + 1}: {error}", line=line + 1
            )
        while accepted:
            yield accepted[:size]
            del accepted[:size]
        self._finished = True

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


def _record_lines(record: list[str]) -> int:
    r"""Physical lines a record spans: line breaks in its fields (``\r\n``, ``\r``, ``\n``) + 1."""
    text = "\x00".join(record)  # a separator, so no \r\n is made across two fields
    return 1 + text.count("\r") + text.count("\n") - text.count("\r\n")


def _batch_lines(
    batch: list[list[str]], start: int, counted: int, source: _TextSource
) -> Sequence[int]:
    r"""The line each record of a batch ends on, the last record before it ending on ``start``.

    ``counted`` is how far the parser's line count advanced while it read the batch. When
    that is exactly one per record, record *i* ends on line ``start + i + 1``, and the
    common case costs nothing per record. Otherwise each record's lines are counted from its
    fields (:func:`_record_lines`), which is what the csv module counts, because the
    parser's count can be off: a record spans several lines (a quoted field holding line
    breaks); the text ended without a final line break (``source.unterminated``), which the
    parser does not count — and a multi-line record could hide that; or a line ended by a
    lone ``\r`` was followed by a blank one, which aiocsv 1.4 counts twice.

    One record is counted a line too many from its fields: the file's last, when the text
    ended inside its open quote right after a line break (a truncated upload), so that no
    line ends it. The text's own end tells it apart from a closed quote followed by a line
    break (:meth:`_TextSource.ends_in_open_quote`); the parser's count cannot, since it may
    hold a double count, and a batch boundary must not change a line number (a file read in
    slices, :mod:`stori_pipeline.scaleout`, batches differently).
    """
    if counted == len(batch) and not source.unterminated:
        return range(start + 1, start + counted + 1)
    lines = list(accumulate(map(_record_lines, batch), initial=start))[1:]
    if (
        source.done
        and not source.unterminated
        and batch[-1][-1:]
        and batch[-1][-1][-1:] in ("\r", "\n")
        and source.ends_in_open_quote(batch[-1][-1])
    ):
        lines[-1] -= 1
    return lines


def _feed_batch(  # noqa: PLR0913 - the batch and where the line counts stood
    validator: RowValidator,
    batch: list[list[str]],
    *,
    start: int,
    counted: int,
    source: _TextSource,
    collect: bool,
) -> tuple[list[Transaction], int]:
    """Validate a batch of records (see :func:`_batch_lines` for ``start`` and ``counted``).

    Blank lines (empty records) are dropped: lines, but not rows. Returns the accepted rows
    and the line the batch's last record ends on.
    """
    lines = _batch_lines(batch, start, counted, source)
    end = lines[-1]
    if not all(batch):
        kept = [i for i, record in enumerate(batch) if record]
        batch = [batch[i] for i in kept]
        lines = [lines[i] for i in kept]
    return (validator.feed(batch, lines, collect=collect) if batch else []), end


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
