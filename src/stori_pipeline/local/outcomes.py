"""What each invocation of the local stack did, told as it was.

The handlers return what happened (``handlers/process_user_transaction.py`` returns the
ingest's counts, file error and accounts; ``handlers/send_user_email.py`` the SES message id or
why nothing was sent) and the dispatcher hands that result back; :class:`OutcomeBook` turns
each :class:`~stori_pipeline.local.dispatcher.Invocation` into an :class:`Described` outcome:
one of :class:`Outcome`, the thing it was about (the object key or the account) and a reason in
words. Pure: no AWS, no I/O.

A duplicate delivery is recognised the way it happens: Powertools idempotency answers a
repeated event with the stored result of the first one, so a result identical to an earlier
invocation's (the same SES message id; the same ingest result, timing included) means the
handler did nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from stori_pipeline.local.dispatcher import Invocation

__all__ = ["Described", "Outcome", "OutcomeBook"]


class Outcome(StrEnum):
    """How one invocation ended."""

    PROCESSED = "processed"
    SENT = "sent"
    DUPLICATE = "skipped: duplicate delivery"
    FILE_REJECTED = "file rejected"
    NOT_PROCESSED = "not processed"
    UNKNOWN_USER = "unknown user"
    INVALID_ADDRESS = "invalid address"
    INVALID_EVENT = "invalid event"
    NOT_SENT = "not sent"
    FAILED = "failed, will be retried"
    DEAD_LETTERED = "failed, dead-lettered"


# Outcomes after which the work the event asked for is done (the exit status of `demo`).
_DELIVERED = {Outcome.PROCESSED, Outcome.SENT, Outcome.DUPLICATE}
_EMAIL_REASONS = {
    "unknown_account": Outcome.UNKNOWN_USER,
    "invalid_email": Outcome.INVALID_ADDRESS,
    "invalid_event": Outcome.INVALID_EVENT,
}


@dataclass(frozen=True, slots=True)
class Described:
    """One invocation's outcome: what it was about, how it ended and why.

    ``message_id`` is the SES message id of the email this invocation sent (``SENT`` only).
    """

    invocation: Invocation
    outcome: Outcome
    subject: str
    reason: str = ""
    message_id: str | None = None

    @property
    def delivered(self) -> bool:
        """Whether the event's work got done (an email sent, a file stored and announced)."""
        return self.outcome in _DELIVERED

    @property
    def final(self) -> bool:
        """No further attempt will follow (anything but a failure that will be retried)."""
        return self.outcome is not Outcome.FAILED

    def line(self) -> str:
        """One plain-text line for a console (no markup: it holds file and AWS text)."""
        invocation = self.invocation
        text = f"{invocation.function} #{invocation.attempt} {self.subject}: {self.outcome}"
        if self.reason:
            text += f" ({self.reason})"
        return f"{text} in {invocation.seconds:.2f} s"


@dataclass(slots=True)
class OutcomeBook:
    """Describes invocations in the order they end; remembers results to spot replays.

    Args:
        ingest: the logical id of the function that processes uploads.
        email: the logical id of the function that sends the emails.
    """

    ingest: str
    email: str
    described: list[Described] = field(default_factory=list)
    _message_ids: set[str] = field(default_factory=set)
    _ingest_results: list[dict[str, Any]] = field(default_factory=list)

    def describe(self, invocation: Invocation) -> Described:
        """The outcome of ``invocation`` (also kept in ``described``)."""
        described = self._describe(invocation)
        self.described.append(described)
        return described

    def _describe(self, invocation: Invocation) -> Described:
        subject = _subject(invocation.event)
        if invocation.error is not None:
            outcome = Outcome.DEAD_LETTERED if invocation.dead_lettered else Outcome.FAILED
            reason = invocation.error_message or "failed"
            if invocation.dead_lettered:
                reason += f"; {invocation.attempt} attempts"
            return Described(invocation, outcome, subject, reason)
        if invocation.result is None:
            # The handler returned nothing: it succeeded, and that is all it said.
            return Described(invocation, Outcome.PROCESSED, subject, "returned no result")
        result = invocation.result if isinstance(invocation.result, dict) else {}
        if invocation.function == self.email:
            return self._email(invocation, subject, result)
        if invocation.function == self.ingest:
            return self._ingest(invocation, subject, result)
        return Described(invocation, Outcome.PROCESSED, subject, str(result.get("status", "")))

    def _email(self, invocation: Invocation, subject: str, result: dict[str, Any]) -> Described:
        status = result.get("status")
        if status == "sent":
            message_id = str(result.get("messageId", ""))
            if message_id in self._message_ids:
                return Described(
                    invocation,
                    Outcome.DUPLICATE,
                    subject,
                    f"the email {message_id} was sent by an earlier delivery",
                )
            self._message_ids.add(message_id)
            return Described(
                invocation,
                Outcome.SENT,
                subject,
                f"to {result.get('recipient', '?')}",
                message_id=message_id,
            )
        reason = str(result.get("reason", status or "no result"))
        outcome = _EMAIL_REASONS.get(reason, Outcome.NOT_SENT)
        return Described(invocation, outcome, subject, reason)

    def _ingest(self, invocation: Invocation, subject: str, result: dict[str, Any]) -> Described:
        status = result.get("status")
        if status != "processed":
            # "skipped" (the object is gone, a permanent problem) or "ignored" (not an
            # Object Created event): nothing stored, nothing to retry.
            reason = str(result.get("reason") or status or "no result")
            return Described(invocation, Outcome.NOT_PROCESSED, subject, reason)
        if result in self._ingest_results:
            return Described(
                invocation,
                Outcome.DUPLICATE,
                subject,
                f"import {result.get('importId')} was processed by an earlier delivery",
            )
        self._ingest_results.append(result)
        if result.get("fileError"):
            detail = result.get("fileErrorDetail")
            reason = str(result["fileError"]) + (f": {detail}" if detail else "")
            return Described(invocation, Outcome.FILE_REJECTED, subject, reason)
        referenced = [str(a) for a in result.get("eventsReferenced") or ()]
        reason = (
            f"{result.get('rowsRead', 0):,} rows read, {result.get('rowsAccepted', 0):,} "
            f"accepted, {result.get('rowsRejected', 0):,} rejected, "
            f"{result.get('itemsWritten', 0):,} items written, "
            f"{result.get('eventsPublished', 0):,} events published"
        )
        if result.get("path") == "distributed":
            reason += f" (distributed: {result.get('ranges')} ranges)"
        if referenced:
            reason += f"; summary stored in S3 and referenced for {', '.join(referenced)}"
        return Described(invocation, Outcome.PROCESSED, subject, reason)


def _subject(event: dict[str, Any]) -> str:
    """What the event is about: the object key, or the account of a summary."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return "?"
    key = (
        (detail.get("object") or {}).get("key") if isinstance(detail.get("object"), dict) else None
    )
    if key:
        return str(key)
    summary = detail.get("summary")
    if isinstance(summary, dict) and summary.get("accountId"):
        return str(summary["accountId"])
    if detail.get("accountId"):  # a schemaVersion 2 (claim-check) event
        return str(detail["accountId"])
    return "?"
