"""Each invocation of the local stack is told as it was, from the handler's own result."""

from __future__ import annotations

from typing import Any

import pytest

from stori_pipeline.local.dispatcher import Invocation
from stori_pipeline.local.outcomes import Outcome, OutcomeBook

INGEST, EMAIL = "Ingest", "Email"
UPLOAD = {"detail": {"bucket": {"name": "b"}, "object": {"key": "incoming/A1/f.csv"}}}
SUMMARY = {"detail": {"importId": "i1", "summary": {"accountId": "A1"}}}


def call(
    function: str,
    event: dict[str, Any],
    result: Any = None,
    *,
    error: str | None = None,
    attempt: int = 1,
    max_attempts: int = 3,
) -> Invocation:
    """An invocation of ``function`` that returned ``result`` or failed with ``error``."""
    return Invocation(
        function=function,
        message_id=f"m{attempt}",
        attempt=attempt,
        event=event,
        error=error,
        seconds=0.5,
        result=result,
        max_attempts=max_attempts,
    )


def ingested(**changes: Any) -> dict[str, Any]:
    """A process-user-transaction result (the handler's shape), with ``changes``."""
    result = {
        "status": "processed",
        "importId": "i1",
        "rowsRead": 10,
        "rowsAccepted": 8,
        "rowsRejected": 2,
        "itemsWritten": 8,
        "eventsPublished": 1,
        "eventsSkipped": [],
        "fileError": None,
        "fileErrorDetail": None,
        "accounts": ["A1"],
        "durationSeconds": 0.123,
    }
    return {**result, **changes}


@pytest.fixture
def book() -> OutcomeBook:
    """A fresh book for the two functions."""
    return OutcomeBook(ingest=INGEST, email=EMAIL)


def test_a_sent_email_carries_its_message_id(book: OutcomeBook) -> None:
    """A sent email is delivered, and names the SES message it sent."""
    result = {"status": "sent", "messageId": "ses-1", "recipient": "a@example.com"}
    described = book.describe(call(EMAIL, SUMMARY, result))
    assert (described.outcome, described.message_id, described.subject) == (
        Outcome.SENT,
        "ses-1",
        "A1",
    )
    assert described.delivered
    assert "a@example.com" in described.line()


def test_a_replayed_email_result_is_a_duplicate_that_sent_nothing(book: OutcomeBook) -> None:
    """Idempotency answers a repeated event with the first result: same SES message id."""
    result = {"status": "sent", "messageId": "ses-1", "recipient": "a@example.com"}
    book.describe(call(EMAIL, SUMMARY, result))
    again = book.describe(call(EMAIL, SUMMARY, dict(result)))
    assert again.outcome is Outcome.DUPLICATE
    assert again.message_id is None  # no email of its own to point at
    assert again.delivered


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        ("unknown_account", Outcome.UNKNOWN_USER),
        ("invalid_email", Outcome.INVALID_ADDRESS),
        ("invalid_event", Outcome.INVALID_EVENT),
        ("something_new", Outcome.NOT_SENT),
    ],
)
def test_an_email_not_sent_says_why(book: OutcomeBook, reason: str, outcome: Outcome) -> None:
    """Each permanent reason the email function gives has its own outcome."""
    described = book.describe(call(EMAIL, SUMMARY, {"status": "failed", "reason": reason}))
    assert described.outcome is outcome
    assert described.message_id is None
    assert not described.delivered
    assert described.final


def test_a_rejected_file_shows_its_code_and_reason(book: OutcomeBook) -> None:
    """A file-level rejection is not "ok": its code and the reason in words."""
    result = ingested(
        rowsRead=0, fileError="bad_header", fileErrorDetail="missing required column 'id'"
    )
    described = book.describe(call(INGEST, UPLOAD, result))
    assert described.outcome is Outcome.FILE_REJECTED
    assert described.reason == "bad_header: missing required column 'id'"
    assert described.subject == "incoming/A1/f.csv"
    assert not described.delivered


def test_a_processed_file_and_its_replay(book: OutcomeBook) -> None:
    """The same result again is idempotency replaying the first run."""
    first = book.describe(call(INGEST, UPLOAD, ingested()))
    again = book.describe(call(INGEST, UPLOAD, ingested()))
    other_run = book.describe(call(INGEST, UPLOAD, ingested(durationSeconds=0.5)))
    assert first.outcome is Outcome.PROCESSED
    assert "8 accepted" in first.reason
    assert "2 rejected" in first.reason
    assert again.outcome is Outcome.DUPLICATE
    # A genuinely new run of the object (another duration) is processing, not a replay.
    assert other_run.outcome is Outcome.PROCESSED


def test_an_object_not_processed(book: OutcomeBook) -> None:
    """A skipped object (gone, not an upload) says so with the handler's reason."""
    result = {"status": "skipped", "reason": "the object is gone"}
    described = book.describe(call(INGEST, UPLOAD, result))
    assert (described.outcome, described.reason) == (Outcome.NOT_PROCESSED, "the object is gone")


def test_failures_are_retried_then_dead_lettered(book: OutcomeBook) -> None:
    """A failure shows its last line; the last allowed attempt is dead-lettered."""
    error = "Traceback (most recent call last):\n  ...\nRuntimeError: throttled\n"
    first = book.describe(call(INGEST, UPLOAD, error=error, attempt=1, max_attempts=2))
    last = book.describe(call(INGEST, UPLOAD, error=error, attempt=2, max_attempts=2))
    assert (first.outcome, first.final) == (Outcome.FAILED, False)
    assert first.reason == "RuntimeError: throttled"
    assert (last.outcome, last.final) == (Outcome.DEAD_LETTERED, True)
    assert last.reason == "RuntimeError: throttled; 2 attempts"
