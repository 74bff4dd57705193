"""S3 adapters: the streamed object body, and the rejected-rows report."""

from __future__ import annotations

import csv
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Self

from botocore.exceptions import ClientError

from stori_pipeline.errors import AwsOperationError, PermanentError
from stori_pipeline.records import Rejection

__all__ = [
    "BODY_CHUNK_SIZE",
    "CHANGED_CODES",
    "MISSING_CODES",
    "REPORT_HEADER",
    "ObjectGoneError",
    "OpenedObject",
    "RejectionReport",
    "open_object",
]

BODY_CHUNK_SIZE = 256 * 1024
# "detail" says what was wrong with a rejected file (empty for a rejected row, whose code
# says it all): SPEC §4's line,id,code plus one column at the end.
REPORT_HEADER = ("line", "id", "code", "detail")
# Rejections stay in memory up to this size, then spill to a temporary file.
_SPOOL_BYTES = 1024 * 1024
# S3 error codes of an object that is not there, and of one replaced since the event.
MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
CHANGED_CODES = frozenset({"PreconditionFailed", "412"})


class ObjectGoneError(PermanentError):
    """The object of the event no longer exists, or was replaced by another version.

    A newer object raises its own event, so there is nothing to retry.
    """

    def __init__(self, bucket: str, keys: Sequence[str], etag: str, code: str | None) -> None:
        self.bucket = bucket
        self.keys = tuple(keys)
        self.etag = etag
        self.code = code
        super().__init__(f"s3://{bucket}/{keys[0]} (ETag {etag}) is gone or changed ({code})")


@dataclass(frozen=True, slots=True)
class OpenedObject:
    """An object whose body is being streamed; ``key`` is the candidate that existed."""

    key: str
    chunks: AsyncIterator[bytes]


def _code(exc: ClientError) -> str | None:
    code = exc.response.get("Error", {}).get("Code")
    return code if isinstance(code, str) else None


@asynccontextmanager
async def open_object(  # noqa: PLR0913 - the object identity plus options
    client: Any,  # noqa: ANN401 - aiobotocore clients are untyped
    bucket: str,
    keys: Sequence[str],
    etag: str,
    *,
    version_id: str | None = None,
    chunk_size: int = BODY_CHUNK_SIZE,
) -> AsyncIterator[OpenedObject]:
    """Open the first of ``keys`` that exists, pinned to ``etag``, and stream its body.

    ``If-Match`` makes S3 refuse a newer version written after the event, so the rows read
    always belong to the ETag stored on the items; in a versioned bucket ``version_id`` reads
    exactly the version the event names instead. The body is read in ``chunk_size`` pieces
    and never as a whole.

    Raises:
        ObjectGoneError: none of ``keys`` exists with that ETag.
        AwsOperationError: any other S3 failure.
    """
    last_code: str | None = None
    for key in keys:
        try:
            version = {"VersionId": version_id} if version_id else {}
            response = await client.get_object(Bucket=bucket, Key=key, IfMatch=etag, **version)
        except ClientError as exc:
            last_code = _code(exc)
            if last_code in MISSING_CODES:
                continue
            if last_code in CHANGED_CODES:
                raise ObjectGoneError(bucket, keys, etag, last_code) from exc
            raise AwsOperationError(
                str(exc), service="s3", operation="GetObject", code=last_code
            ) from exc
        body = response["Body"]
        # Entering the body returns the raw aiohttp response; keep the StreamingBody itself.
        async with body:
            yield OpenedObject(key, body.iter_chunks(chunk_size))
        return
    raise ObjectGoneError(bucket, keys, etag, last_code)


class RejectionReport:
    """Collects rejected rows as CSV (``line,id,code,detail``) in a spooled temporary file.

    Memory stays bounded however many rows are rejected: past 1 MiB the rows spill to disk.
    Call :meth:`add` from the stream's ``on_reject``, then :meth:`finish`. Use as a context
    manager (or call :meth:`close`).

    Args:
        client: an aioboto3/aiobotocore S3 client (owned by the caller).
        bucket: the bucket of the report.
        key: the report's key (``keys.report_key`` of the object key).
        header: ``False`` for a part of a report (:mod:`stori_pipeline.scaleout` joins the
            parts of one file's slices with :meth:`extend`).
    """

    def __init__(
        self,
        client: Any,  # noqa: ANN401 - aiobotocore clients are untyped
        bucket: str,
        key: str,
        *,
        header: bool = True,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self.key = key
        self._file = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by close()
            max_size=_SPOOL_BYTES, mode="w+b"
        )
        self._writer = csv.writer(_ByteSink(self._file), lineterminator="\n")
        if header:
            self._writer.writerow(REPORT_HEADER)
        self.count = 0

    def add(self, rejection: Rejection) -> None:
        """Record one rejected row."""
        self._writer.writerow((rejection.line, rejection.id, str(rejection.code), ""))
        self.count += 1

    def extend(self, rows: bytes, count: int) -> None:
        """Append ``count`` rows written by a header-less report (a slice's part)."""
        self._file.write(rows)
        self.count += count

    def add_file_error(self, code: str, *, line: int = 0, detail: str = "") -> None:
        """Record a file-level rejection: ``<line>,,<code>,<detail>``.

        ``line`` is where the file went wrong (the header's line for ``bad_header`` and
        ``no_account``, the line the CSV broke on for ``malformed_csv``; 0 for
        ``empty_file``, which has no record); ``detail`` says what (the missing or doubled
        column, the parser's complaint).
        """
        self._writer.writerow((line, "", code, detail))
        self.count += 1

    async def finish(self) -> str | None:
        """Upload the report when it holds a row and return its key; else remove a stale one.

        A report left by an earlier version of the same key would otherwise describe rows
        this version does not have. Deleting a missing key is not an error in S3.
        """
        try:
            if not self.count:
                await self._client.delete_object(Bucket=self._bucket, Key=self.key)
                return None
            size = self._file.tell()
            self._file.seek(0)
            await self._client.put_object(
                Bucket=self._bucket,
                Key=self.key,
                Body=self._file,
                ContentLength=size,
                ContentType="text/csv; charset=utf-8",
            )
        except ClientError as exc:
            operation = "PutObject" if self.count else "DeleteObject"
            raise AwsOperationError(
                str(exc), service="s3", operation=operation, code=_code(exc)
            ) from exc
        return self.key

    def close(self) -> None:
        """Release the temporary file."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class _ByteSink:
    """A text ``write`` target for ``csv.writer`` that stores UTF-8 bytes.

    Ids in rejections may hold U+FFFD or any other character; encoding here keeps the spooled
    file binary (what the upload wants) without a text wrapper's own buffering.
    """

    def __init__(self, target: Any) -> None:  # noqa: ANN401 - a binary file object
        self._target = target

    def write(self, text: str) -> int:
        return int(self._target.write(text.encode()))
