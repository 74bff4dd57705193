"""Streaming a transactions file: async bytes -> text -> aiocsv records -> validated batches.

The same code path serves a local file and an S3 body: anything that is an
``AsyncIterable[bytes]`` is a source. Memory stays flat: one chunk of text, one batch of
records, the summary buckets, and the set of accepted ids per account (SPEC §2's duplicate
check is the only state that grows with the file).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from aiocsv import AsyncReader

from stori_pipeline.errors import FileRejectedError
from stori_pipeline.records import FileErrorCode, Rejection, RowValidator, Transaction
from stori_pipeline.summary import AccountSummary

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "ImportResult",
    "TransactionStream",
    "file_chunks",
    "summarize_stream",
]

DEFAULT_BATCH_SIZE = 500
CHUNK_SIZE = 256 * 1024
_UNDECODABLE_RE = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What reading one file produced. ``file_error`` is a SPEC §2 file-level code or ``None``."""

    rows_read: int
    rows_accepted: int
    rows_rejected: int
    accounts: tuple[AccountSummary, ...]
    file_error: FileErrorCode | None = None
    file_error_detail: str | None = None

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


async def file_chunks(path: str | Path, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
    """Read a local file as an async byte source.

    A blocking read of one chunk from a local disk is shorter than a thread hop would be.
    """
    with Path(path).open("rb") as handle:  # noqa: ASYNC230 - see the docstring
        while chunk := handle.read(chunk_size):
            yield chunk


class _TextSource:
    """The ``read(size)`` object aiocsv wants, decoding UTF-8 incrementally.

    Bytes that are not UTF-8 become lone surrogates (``surrogateescape``) instead of failing the
    file; the first time a chunk holds one, the validator starts checking rows for them
    (SPEC §2 ``invalid_encoding``), so clean files never pay for that check.
    """

    def __init__(self, chunks: AsyncIterable[bytes], on_undecodable: Callable[[], None]) -> None:
        self._chunks = aiter(chunks)
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="surrogateescape")
        self._on_undecodable = on_undecodable
        self._done = False

    async def read(self, _size: int) -> str:
        while not self._done:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._done = True
                text = self._decoder.decode(b"", final=True)
            else:
                text = self._decoder.decode(chunk)
            if text:
                if _UNDECODABLE_RE.search(text):
                    self._on_undecodable()
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
    """

    def __init__(
        self,
        chunks: AsyncIterable[bytes],
        *,
        account: str | None = None,
        on_reject: Callable[[Rejection], object] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        collect: bool = True,
    ) -> None:
        self._chunks = chunks
        self._account = account
        self._on_reject = on_reject or (lambda _rejection: None)
        self._batch_size = batch_size
        self._collect = collect
        self._validator: RowValidator | None = None
        self._error: FileRejectedError | None = None
        self._finished = False
        self._undecodable = False

    @property
    def rows_read(self) -> int:
        """Data records read so far (for progress reports)."""
        return 0 if self._validator is None else self._validator.rows_read

    def _undecodable_seen(self) -> None:
        self._undecodable = True
        if self._validator is not None:
            self._validator.check_encoding = True

    async def __aiter__(self) -> AsyncIterator[list[Transaction]]:  # noqa: C901 - one loop
        reader = AsyncReader(_TextSource(self._chunks, self._undecodable_seen))
        # AsyncReader.__anext__ is a Python coroutine around aiocsv's C parser, and its
        # line_num a Python property: iterating the parser itself saves both on every row
        # (~20% of the read time). Any aiocsv without that attribute gets the public path.
        parser = getattr(reader, "_parser", reader)
        records = aiter(parser)
        header: list[str] = []
        async for record in records:
            if record:
                header = record
                break
        if not header:
            self._fail(FileRejectedError(FileErrorCode.EMPTY_FILE, "the file has no header"))
            return
        try:
            validator = RowValidator(
                header, default_account=self._account, on_reject=self._on_reject
            )
        except FileRejectedError as exc:
            self._fail(exc)
            return
        validator.check_encoding = self._undecodable
        self._validator = validator
        feed, collect, size = validator.feed, self._collect, self._batch_size
        batch: list[list[str]] = []
        lines: list[int] = []
        accepted: list[Transaction] = []
        async for record in records:
            if not record:
                continue  # a blank line
            batch.append(record)
            lines.append(parser.line_num)
            if len(batch) >= size:
                accepted += feed(batch, lines, collect=collect)
                batch, lines = [], []
                if len(accepted) >= size:
                    yield accepted[:size]
                    del accepted[:size]
        if batch:
            accepted += feed(batch, lines, collect=collect)
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
            )
        v = self._validator
        return ImportResult(v.rows_read, v.rows_accepted, v.rows_rejected, v.ledger.summaries())


async def summarize_stream(
    chunks: AsyncIterable[bytes],
    *,
    account: str | None = None,
    on_reject: Callable[[Rejection], object] | None = None,
) -> ImportResult:
    """Read a whole file and return its summary, without building per-row values."""
    stream = TransactionStream(chunks, account=account, on_reject=on_reject, collect=False)
    async for _ in stream:
        pass
    return stream.result()
