"""The exception hierarchy of stori-pipeline.

Every error the library raises on purpose derives from :class:`StoriPipelineError` and
carries its context as keyword attributes, never only inside the message::

    StoriPipelineError
    ├── ConfigurationError        settings from the environment are missing or invalid
    ├── FileRejectedError         the whole input file is rejected (bad_header, no_account, …)
    ├── AwsOperationError         an AWS call failed (translated by error code)
    │   └── RetriesExhaustedError transient failures outlasted the retry budget
    └── PermanentError            input that no retry can fix (do not burn Lambda retries)

Feature modules add their own subclasses (for example the email sender's recipient errors)
under these branches, so callers can catch a whole family with one ``except``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AwsOperationError",
    "ConfigurationError",
    "FileRejectedError",
    "PermanentError",
    "RetriesExhaustedError",
    "StoriPipelineError",
]


class StoriPipelineError(Exception):
    """Base class of every error stori-pipeline raises on purpose."""


class ConfigurationError(StoriPipelineError):
    """One or more settings are missing or invalid; ``problems`` lists every one of them."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("invalid configuration: " + "; ".join(self.problems))


class PermanentError(StoriPipelineError):
    """Input that no retry can fix: log it, report it, and do not fail the invocation."""


class FileRejectedError(PermanentError):
    """The whole file is rejected with one of SPEC §2's file-level codes.

    ``detail`` says what was wrong; ``line`` is where (the physical line the offending
    record ends on, as row rejections count; 0 when there is no such record).
    """

    def __init__(self, code: str, detail: str, *, line: int = 0) -> None:
        self.code = code
        self.detail = detail
        self.line = line
        super().__init__(f"{code}: {detail}")


class AwsOperationError(StoriPipelineError):
    """An AWS call failed; ``code`` is the AWS error code (never parsed from message text)."""

    def __init__(self, message: str, *, service: str, operation: str, code: str | None) -> None:
        self.service = service
        self.operation = operation
        self.code = code
        super().__init__(f"{service}.{operation} failed ({code or 'no error code'}): {message}")


class RetriesExhaustedError(AwsOperationError):
    """A transient AWS failure persisted through every retry; the invocation must fail."""

    def __init__(
        self, message: str, *, service: str, operation: str, code: str | None, attempts: int
    ) -> None:
        self.attempts = attempts
        super().__init__(
            f"{message} (gave up after {attempts} attempts)",
            service=service,
            operation=operation,
            code=code,
        )
