"""Reading both event shapes: ``schemaVersion`` 1 (summary inline) and 2 (claim check).

A version 2 detail (see :mod:`stori_pipeline.ingest.events`) carries ``accountId`` and a
``summaryRef`` instead of the summary; :func:`resolve_summary_detail` fetches the summary from
S3 and returns the version 1 detail it stands for, so everything after it reads one shape.

The object read is never chosen by the event alone: it must be exactly
``summaries/<importId>/<accountId>.json`` of the event's own ids, in the bucket of the
event's ``source`` — and the function's role may read nothing else there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from stori_pipeline.email.clients import S3Client
from stori_pipeline.email.errors import InvalidSummaryEventError
from stori_pipeline.errors import AwsOperationError
from stori_pipeline.ingest.keys import summary_key

__all__ = [
    "MAX_SUMMARY_BYTES",
    "SummaryReference",
    "detail_account_id",
    "parse_summary_reference",
    "resolve_summary_detail",
]

# The largest possible summary (2,424 months of one account) is ~700 KB; anything far
# beyond that is not a summary this pipeline wrote.
MAX_SUMMARY_BYTES = 8 * 1024 * 1024
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


class SummaryReference:
    """Where a claim-checked summary is: ``bucket`` and ``key``, checked against the ids."""

    __slots__ = ("account_id", "bucket", "key")

    def __init__(self, bucket: str, key: str, account_id: str) -> None:
        self.bucket = bucket
        self.key = key
        self.account_id = account_id


def detail_account_id(detail: Mapping[str, Any]) -> object:
    """The account a detail of either version is about (for logs), or ``None``."""
    summary = detail.get("summary")
    if isinstance(summary, Mapping):
        return summary.get("accountId")
    return detail.get("accountId")


def parse_summary_reference(detail: Mapping[str, Any]) -> SummaryReference | None:
    """``None`` for a version 1 detail; the checked reference of a version 2 one.

    Raises:
        InvalidSummaryEventError: a version 2 detail whose reference is missing or is not
            the object its own ``importId`` and ``accountId`` name (permanent).
    """
    if not isinstance(detail, Mapping) or detail.get("schemaVersion") != 2:
        return None
    import_id, account_id = detail.get("importId"), detail.get("accountId")
    source, ref = detail.get("source"), detail.get("summaryRef")
    if not isinstance(import_id, str) or not import_id:
        raise InvalidSummaryEventError("importId is missing")
    if not isinstance(account_id, str) or not 1 <= len(account_id) <= 64:
        raise InvalidSummaryEventError("accountId is missing or invalid")
    if not isinstance(source, Mapping) or not isinstance(ref, Mapping):
        raise InvalidSummaryEventError("source or summaryRef is missing")
    bucket = source.get("bucket")
    expected = summary_key(import_id, account_id)
    if not isinstance(bucket, str) or not bucket:
        raise InvalidSummaryEventError("source.bucket is missing")
    if ref.get("bucket") != bucket or ref.get("key") != expected:
        raise InvalidSummaryEventError(
            f"summaryRef must be s3://{bucket}/{expected}, the import's own summary"
        )
    return SummaryReference(bucket, expected, account_id)


async def resolve_summary_detail(detail: Mapping[str, Any], s3: S3Client) -> Mapping[str, Any]:
    """The version 1 detail: as given, or with the claim-checked summary fetched from S3.

    Raises:
        InvalidSummaryEventError: the reference is wrong, the object is gone, too large, not
            JSON, or about another account (permanent: no retry brings it back).
        AwsOperationError: S3 failed otherwise (transient: the invocation is retried).
    """
    ref = parse_summary_reference(detail)
    if ref is None:
        return detail
    try:
        response = await s3.get_object(Bucket=ref.bucket, Key=ref.key)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code")
        if code in _MISSING:
            raise InvalidSummaryEventError(
                f"the referenced summary s3://{ref.bucket}/{ref.key} does not exist"
            ) from exc
        raise AwsOperationError(
            str(error.get("Message", exc)), service="s3", operation="GetObject", code=code
        ) from exc
    stream = response["Body"]
    async with stream:
        if int(response.get("ContentLength") or 0) > MAX_SUMMARY_BYTES:
            raise InvalidSummaryEventError(
                f"the referenced summary is over {MAX_SUMMARY_BYTES} bytes"
            )
        data: bytes = await stream.read()
    try:
        summary = json.loads(data)
    except ValueError as exc:
        raise InvalidSummaryEventError(f"the referenced summary is not JSON: {exc}") from exc
    if not isinstance(summary, Mapping) or summary.get("accountId") != ref.account_id:
        raise InvalidSummaryEventError("the referenced summary is about another account")
    return {
        "schemaVersion": 1,
        "importId": detail["importId"],
        "source": detail["source"],
        "rowsRejected": detail.get("rowsRejected", 0),
        "summary": summary,
    }
