"""Sending one raw message with SESv2, with SES's errors sorted into transient and permanent.

- **Transient** — throttling (``TooManyRequestsException``), a sending quota reached
  (``LimitExceededException``), sending paused or the account suspended (an operator fixes
  it, then the DLQ is redriven), SES's own failures: retried here with backoff, then raised
  as :class:`~stori_pipeline.errors.RetriesExhaustedError`, so the invocation fails, Lambda
  retries it, and it ends in the function's DLQ.
- **Permanent** — the message or an address is rejected (``MessageRejected``: in the SES
  sandbox, an unverified recipient; an unverified sender), a MAIL FROM domain not verified, a
  request SES calls bad: :class:`~stori_pipeline.email.errors.EmailRejectedError`, logged by
  the handler and never retried (no retry makes SES accept it).

Anything else is an :class:`~stori_pipeline.errors.AwsOperationError` (the invocation fails).
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from stori_pipeline.email.clients import SESv2Client
from stori_pipeline.email.errors import EmailRejectedError
from stori_pipeline.errors import AwsOperationError, RetriesExhaustedError
from stori_pipeline.retry import RetryPolicy

__all__ = ["PERMANENT_CODES", "SEND_POLICY", "TRANSIENT_CODES", "send_raw"]

TRANSIENT_CODES = frozenset(
    {
        "TooManyRequestsException",
        "LimitExceededException",
        "Throttling",
        "ThrottlingException",
        "SendingPausedException",
        "AccountSuspendedException",
        "InternalFailure",
        "InternalServiceError",
        "ServiceUnavailable",
    }
)
PERMANENT_CODES = frozenset(
    {
        "MessageRejected",
        "MailFromDomainNotVerifiedException",
        "BadRequestException",
        "NotFoundException",
    }
)
# Inside the email function's 30 s: waits of at most 0.2, 0.4, 0.8, 1.6 s (full jitter), on
# top of botocore's own retries of throttling; then Lambda's retries take over.
SEND_POLICY = RetryPolicy(max_attempts=5, base_delay=0.2, max_delay=2.0)


async def send_raw(
    ses: SESv2Client,
    *,
    sender: str,
    recipient: str,
    raw: bytes,
    policy: RetryPolicy = SEND_POLICY,
) -> str:
    """Send ``raw`` (a whole MIME message) to ``recipient``; return SES's message id.

    Raises:
        EmailRejectedError: SES refused the message or an address (permanent).
        RetriesExhaustedError: throttled or over quota on every attempt (transient).
        AwsOperationError: any other SES failure.
    """
    last_code: str | None = None
    last_message = ""
    for attempt in range(1, policy.max_attempts + 1):
        try:
            response = await ses.send_email(
                FromEmailAddress=sender,
                Destination={"ToAddresses": [recipient]},
                Content={"Raw": {"Data": raw}},
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code"), str(error.get("Message", exc))
            if code in PERMANENT_CODES:
                raise EmailRejectedError(
                    recipient=recipient, ses_code=str(code), ses_message=message
                ) from exc
            if code not in TRANSIENT_CODES:
                raise AwsOperationError(
                    message, service="sesv2", operation="SendEmail", code=code
                ) from exc
            last_code, last_message = code, message
        else:
            return str(response["MessageId"])
        if attempt < policy.max_attempts:
            await policy.sleep(attempt)
    raise RetriesExhaustedError(
        last_message,
        service="sesv2",
        operation="SendEmail",
        code=last_code,
        attempts=policy.max_attempts,
    )
