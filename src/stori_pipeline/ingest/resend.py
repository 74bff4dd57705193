"""Re-sending what an AWS batch call left undone, with backoff: one mechanism for the ingest.

``BatchWriteItem`` returns ``UnprocessedItems`` and ``PutEvents`` returns failed entries; both
may also be throttled as a whole. :func:`resend_until_done` owns the loop — retry throttling
error codes, re-send only what is left, back off between attempts, and raise
``RetriesExhaustedError`` when the policy's attempts run out — and each caller says only what
"what is left" means for its API. AWS errors are translated by error code, never message text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from botocore.exceptions import ClientError

from stori_pipeline.errors import AwsOperationError, RetriesExhaustedError
from stori_pipeline.retry import RetryPolicy

__all__ = ["THROTTLING_CODES", "Leftover", "error_code", "resend_until_done"]

# Error codes that mean "try again later" rather than "this request is wrong".
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
    }
)

P = TypeVar("P")
# What one call left undone: (the part to send again, why, the AWS error code if any),
# or None when everything went through.
Leftover = tuple[P, str, str | None] | None


def error_code(exc: ClientError) -> str | None:
    """The AWS error code of a botocore ``ClientError``."""
    code = exc.response.get("Error", {}).get("Code")
    return code if isinstance(code, str) else None


async def resend_until_done(
    send: Callable[[P], Awaitable[Leftover[P]]],
    pending: P,
    *,
    policy: RetryPolicy,
    service: str,
    operation: str,
) -> None:
    """Call ``send`` until nothing is left, retrying throttling and partial failures.

    Raises:
        AwsOperationError: an error code that is not throttling (no retry can fix it).
        RetriesExhaustedError: something was still left after ``policy.max_attempts``.
    """
    last_problem, last_code = "", None
    for attempt in range(1, policy.max_attempts + 1):
        try:
            leftover = await send(pending)
        except ClientError as exc:
            code = error_code(exc)
            if code not in THROTTLING_CODES:
                raise AwsOperationError(
                    str(exc), service=service, operation=operation, code=code
                ) from exc
            last_problem, last_code = f"throttled: {exc}", code
        else:
            if leftover is None:
                return
            pending, last_problem, last_code = leftover
        if attempt < policy.max_attempts:
            await policy.sleep(attempt)
    raise RetriesExhaustedError(
        last_problem,
        service=service,
        operation=operation,
        code=last_code,
        attempts=policy.max_attempts,
    )
