"""The S3 side of the claim check: a summary too large for its event, stored for the reader.

See :mod:`.events` for when a summary is claim-checked and the ``schemaVersion`` 2 detail that
references it. The objects live in the transactions bucket under ``summaries/`` (the ingest
may write only there and under ``reports/``; the email function may read only there).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from stori_pipeline.errors import AwsOperationError
from stori_pipeline.ingest.resend import Leftover, error_code, resend_until_done
from stori_pipeline.retry import RetryPolicy

__all__ = ["S3SummaryStore"]

# S3's "slow down" is its throttling; the shared list is DynamoDB's and EventBridge's.
_SLOW_DOWN = frozenset({"SlowDown", "503"})


class S3SummaryStore:
    """Puts claim-checked summaries (JSON) in ``bucket``.

    Args:
        client: an aioboto3/aiobotocore S3 client (owned by the caller).
        bucket: the transactions bucket.
        policy: attempts and backoff when S3 asks to slow down.
    """

    def __init__(
        self,
        client: Any,  # noqa: ANN401 - aiobotocore clients are untyped
        bucket: str,
        *,
        policy: RetryPolicy,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._policy = policy

    async def put(self, key: str, body: bytes) -> dict[str, object]:
        """Store ``body`` at ``key``; return ``{"bucket", "key", "bytes"}`` for the event."""

        async def send(_: None) -> Leftover[None]:
            try:
                await self._client.put_object(
                    Bucket=self._bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/json",
                )
            except ClientError as exc:
                code = error_code(exc)
                if code in _SLOW_DOWN:
                    return None, f"slow down: {exc}", code
                raise AwsOperationError(
                    str(exc), service="s3", operation="PutObject", code=code
                ) from exc
            return None

        await resend_until_done(
            send, None, policy=self._policy, service="s3", operation="PutObject"
        )
        return {"bucket": self._bucket, "key": key, "bytes": len(body)}
