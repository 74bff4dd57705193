"""Errors of the email feature, placed under :mod:`stori_pipeline.errors`' hierarchy.

::

    PermanentError
    ├── InvalidSummaryEventError   the event detail is not SPEC §5's shape
    └── RecipientError             no one to send to (never retried)
        ├── UnknownAccountError    no ``Users`` item for the account
        ├── InvalidEmailError      the item has no usable ``Email``
        └── EmailRejectedError     SES refused the message or an address

Each is a :class:`~stori_pipeline.errors.PermanentError`: retrying cannot fix it, so the
handler logs it and returns a failure result instead of burning Lambda retries.
"""

from __future__ import annotations

from stori_pipeline.errors import PermanentError

__all__ = [
    "EmailRejectedError",
    "InvalidEmailError",
    "InvalidSummaryEventError",
    "RecipientError",
    "UnknownAccountError",
]


class InvalidSummaryEventError(PermanentError):
    """The ``Transactions Summarized`` detail is malformed; ``problem`` says how."""

    code = "invalid_event"

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"invalid Transactions Summarized detail: {problem}")


class RecipientError(PermanentError):
    """There is no valid recipient for ``account_id``."""

    code = "recipient_error"

    def __init__(self, message: str, *, account_id: str) -> None:
        self.account_id = account_id
        super().__init__(message)


class UnknownAccountError(RecipientError):
    """The ``Users`` table has no item for the account."""

    code = "unknown_account"

    def __init__(self, *, account_id: str, table: str) -> None:
        self.table = table
        super().__init__(f"no user for account {account_id!r} in {table}", account_id=account_id)


class InvalidEmailError(RecipientError):
    """The user's ``Email`` is missing or not a deliverable-looking address (``reason``)."""

    code = "invalid_email"

    def __init__(self, *, account_id: str, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"account {account_id!r} has no valid email address: {reason}", account_id=account_id
        )


class EmailRejectedError(RecipientError):
    """SES refused the message (``ses_code``, e.g. ``MessageRejected``: an unverified address).

    Retrying sends the same message to the same address, which SES refuses the same way.
    """

    code = "ses_rejected"

    def __init__(self, *, recipient: str, ses_code: str, ses_message: str) -> None:
        self.recipient = recipient
        self.ses_code = ses_code
        self.ses_message = ses_message
        super().__init__(
            f"SES refused the email to {recipient!r} ({ses_code}): {ses_message}",
            account_id="",
        )
