"""``stori-pipeline status``: recent imports with their outcome, and the dead-letter queues.

Sources, and what each can tell:

- the **idempotency table** holds the ingest's result of every object version run in the last
  24 hours (rows, accounts, a rejected file's code, a skipped object's reason) and the email
  function's result per import and account for the last hour (sent, or failed and why);
- the **dead-letter queues** hold what failed for good: an invocation whose retries ran out (its
  event and the error) or an event EventBridge could not deliver. A failed run leaves no
  idempotency record (Powertools deletes it so the retry can run), so these are the only trace
  of a failed import.

Reading a queue does not consume it: the messages shown are received with a short visibility
timeout and made visible again at once (their receive count goes up by one).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from stori_pipeline.ingest.keys import import_id, key_candidates
from stori_pipeline.ops import deployment
from stori_pipeline.ops._cli import literal
from stori_pipeline.ops.records import IdempotencyRecord

__all__ = [
    "DeadLetter",
    "ImportStatus",
    "QueueStatus",
    "StatusReport",
    "collect_status",
    "dead_letter",
]

# While status reads a queue, the messages it shows stay hidden this long at most.
_PEEK_VISIBILITY_SECONDS = 30


class DynamoDBClient(Protocol):
    """The idempotency-table call made here."""

    async def scan(self, **kwargs: object) -> dict[str, Any]:
        """``Scan``."""


class SQSClient(Protocol):
    """The queue calls made here."""

    async def get_queue_attributes(self, **kwargs: object) -> dict[str, Any]:
        """``GetQueueAttributes``."""

    async def receive_message(self, **kwargs: object) -> dict[str, Any]:
        """``ReceiveMessage``."""

    async def change_message_visibility_batch(self, **kwargs: object) -> dict[str, Any]:
        """``ChangeMessageVisibilityBatch``."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message of a dead-letter queue, described.

    ``what`` names the upload (``s3://bucket/key``) or the summary (import and account);
    ``error`` is the function's error message, or EventBridge's delivery error.
    """

    queue: str
    message_id: str
    sent_at: int | None
    what: str
    error: str
    bucket: str | None = None
    key: str | None = None
    etag: str | None = None
    import_id: str | None = None
    account_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON view."""
        return {
            "queue": self.queue,
            "messageId": self.message_id,
            "sentAt": _iso(self.sent_at),
            "what": self.what,
            "error": self.error,
            "importId": self.import_id,
            "accountId": self.account_id,
        }


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def dead_letter(queue: str, message: Mapping[str, Any]) -> DeadLetter:
    """Describe one SQS message of a DLQ (a Lambda OnFailure record or a rule's event)."""
    body_text = str(message.get("Body", ""))
    try:
        body = json.loads(body_text)
    except ValueError:
        body = None
    attributes = _mapping(message.get("MessageAttributes"))
    sent = _mapping(message.get("Attributes")).get("SentTimestamp")
    sent_at = int(sent) // 1000 if isinstance(sent, str) and sent.isdigit() else None
    if not isinstance(body, Mapping):
        return DeadLetter(
            queue, str(message.get("MessageId", "")), sent_at, "unreadable message", body_text[:200]
        )
    if "requestPayload" in body:  # a Lambda destination record: the event and the outcome
        event = _mapping(body.get("requestPayload"))
        context = _mapping(body.get("requestContext"))
        response = _mapping(body.get("responsePayload"))
        error = _text(response.get("errorMessage")) or ""
        condition = _text(context.get("condition")) or "failed"
        attempts = context.get("approximateInvokeCount")
        error = f"{condition} after {attempts} attempt(s)" + (f": {error}" if error else "")
    else:  # a rule's DLQ: the event itself, the delivery error in message attributes
        event = body
        code = _text(_mapping(attributes.get("ERROR_CODE")).get("StringValue")) or "not delivered"
        detail = _text(_mapping(attributes.get("ERROR_MESSAGE")).get("StringValue"))
        error = code + (f": {detail}" if detail else "")
    return _described(queue, str(message.get("MessageId", "")), sent_at, event, error)


def _described(
    queue: str, message_id: str, sent_at: int | None, event: Mapping[str, Any], error: str
) -> DeadLetter:
    detail = _mapping(event.get("detail"))
    obj, bucket_obj = _mapping(detail.get("object")), _mapping(detail.get("bucket"))
    bucket, raw_key = _text(bucket_obj.get("name")), _text(obj.get("key"))
    if bucket and raw_key:
        key = key_candidates(raw_key)[0]
        etag = _text(obj.get("etag")) or _text(obj.get("eTag")) or ""
        return DeadLetter(
            queue,
            message_id,
            sent_at,
            f"s3://{bucket}/{key}",
            error,
            bucket=bucket,
            key=key,
            etag=etag.strip('"'),
            import_id=import_id(bucket, key, etag) if etag else None,
        )
    summary_import = _text(detail.get("importId"))
    account = _text(_mapping(detail.get("summary")).get("accountId"))
    if summary_import or account:
        what = f"summary of import {summary_import}, account {account}"
        return DeadLetter(
            queue, message_id, sent_at, what, error, import_id=summary_import, account_id=account
        )
    return DeadLetter(queue, message_id, sent_at, "unrecognized event", error)


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """One dead-letter queue: what it is for, how many wait, and the first few described."""

    name: str
    purpose: str
    url: str
    waiting: int
    in_flight: int
    shown: tuple[DeadLetter, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON view."""
        return {
            "name": self.name,
            "purpose": self.purpose,
            "url": self.url,
            "waiting": self.waiting,
            "inFlight": self.in_flight,
            "messages": [m.to_json() for m in self.shown],
        }


@dataclass(frozen=True, slots=True)
class ImportStatus:
    """One import (object version) and its outcome, as far as the sources remember it."""

    recorded_at: int | None
    outcome: str
    bucket: str | None = None
    key: str | None = None
    import_id: str | None = None
    rows_read: int | None = None
    rows_accepted: int | None = None
    rows_rejected: int | None = None
    accounts: int | None = None
    emails: Mapping[str, int] = field(default_factory=dict)

    def line(self) -> str:
        """One line for a terminal."""
        where = self.key or f"(unknown object, import {self.import_id or '?'})"
        parts = [self.outcome]
        if self.rows_read is not None:
            parts.append(
                f"rows {self.rows_read:,} read, {self.rows_accepted or 0:,} accepted, "
                f"{self.rows_rejected or 0:,} rejected"
            )
        if self.accounts is not None:
            parts.append(f"{self.accounts} account(s)")
        if self.emails:
            parts.append(
                "emails " + ", ".join(f"{n} {what}" for what, n in sorted(self.emails.items()))
            )
        return literal(f"{_iso(self.recorded_at) or '?':20}  {where}  " + "; ".join(parts))

    def to_json(self) -> dict[str, Any]:
        """A JSON view."""
        return {
            "recordedAt": _iso(self.recorded_at),
            "outcome": self.outcome,
            "bucket": self.bucket,
            "key": self.key,
            "importId": self.import_id,
            "rowsRead": self.rows_read,
            "rowsAccepted": self.rows_accepted,
            "rowsRejected": self.rows_rejected,
            "accounts": self.accounts,
            "emails": dict(self.emails),
        }


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Recent imports (newest first) and every dead-letter queue of one stack."""

    stack_name: str
    imports: tuple[ImportStatus, ...]
    queues: tuple[QueueStatus, ...]

    @property
    def dead_lettered(self) -> int:
        """Messages waiting in all dead-letter queues."""
        return sum(q.waiting + q.in_flight for q in self.queues)

    def lines(self) -> list[str]:
        """The report for a terminal."""
        out = [
            literal(f"stack {self.stack_name}: recent imports, newest first"),
            "  (ingest results are kept 24 h, email results 1 h; failed runs only in the DLQs)",
        ]
        out += [f"  {i.line()}" for i in self.imports] or ["  none recorded"]
        out.append("dead-letter queues")
        for queue in self.queues:
            out.append(
                literal(f"  {queue.name}: {queue.waiting} waiting")
                + (f", {queue.in_flight} in flight" if queue.in_flight else "")
                + f"  ({queue.purpose})"
            )
            out += [
                literal(f"    {_iso(m.sent_at) or '?':20}  {m.what}  {m.error}")
                for m in queue.shown
            ]
            hidden = queue.waiting - len(queue.shown)
            if queue.shown and hidden > 0:
                out.append(f"    … and about {hidden} more")
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON view (``--json``)."""
        return {
            "stack": self.stack_name,
            "imports": [i.to_json() for i in self.imports],
            "deadLetterQueues": [q.to_json() for q in self.queues],
        }


def _iso(epoch: int | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


async def _scan(dynamodb: DynamoDBClient, table: str) -> list[IdempotencyRecord]:
    records = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = await dynamodb.scan(**kwargs)
        records += [IdempotencyRecord.from_item(item) for item in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return records
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def _queue(sqs: SQSClient, output: str, purpose: str, url: str, peek: int) -> QueueStatus:
    attributes = (
        await sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    ).get("Attributes", {})
    seen: dict[str, Mapping[str, Any]] = {}
    handles: list[str] = []
    while len(seen) < peek:
        page = await sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(10, peek - len(seen)),
            VisibilityTimeout=_PEEK_VISIBILITY_SECONDS,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = [m for m in page.get("Messages", []) if m["MessageId"] not in seen]
        if not messages:
            break
        for message in messages:
            seen[message["MessageId"]] = message
            handles.append(message["ReceiptHandle"])
    # Visible again at once: looking must not delay a redrive or another reader.
    for start in range(0, len(handles), 10):
        await sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for n, handle in enumerate(handles[start : start + 10])
            ],
        )
    name = output.removesuffix("Url")
    return QueueStatus(
        name=name,
        purpose=purpose,
        url=url,
        waiting=int(attributes.get("ApproximateNumberOfMessages", 0)),
        # Counted before the peek, so these are someone else's receives in progress.
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        shown=tuple(dead_letter(name, m) for m in seen.values()),
    )


def _email_outcomes(
    records: Sequence[IdempotencyRecord], queues: Sequence[QueueStatus]
) -> dict[str, Counter[str]]:
    """Per importId, how its emails ended: sent, failed (why), dead-lettered."""
    emails: dict[str, Counter[str]] = {}
    for record in records:
        if record.is_email:
            outcome = str(record.field("status") or "recorded")
            if outcome == "failed":
                outcome = f"failed ({record.field('reason')})"
            emails.setdefault(str(record.field("importId")), Counter())[outcome] += 1
    for queue in queues:
        for letter in queue.shown:
            if letter.account_id is not None and letter.import_id is not None:
                emails.setdefault(letter.import_id, Counter())["dead-lettered"] += 1
    return emails


def _imports(
    records: Sequence[IdempotencyRecord], queues: Sequence[QueueStatus], now: float
) -> list[ImportStatus]:
    emails = _email_outcomes(records, queues)
    found = []
    for record in records:
        if not record.is_ingest:
            continue
        if record.status != "COMPLETED" or record.data is None:
            running = (record.in_progress_until or 0) > now * 1000
            found.append(
                ImportStatus(
                    recorded_at=None,
                    outcome="in progress" if running else f"{record.status or 'unknown'} (stale)",
                )
            )
            continue
        found.append(_completed(record, emails))
    for queue in queues:
        found += [
            ImportStatus(
                recorded_at=letter.sent_at,
                outcome=f"dead-lettered in {queue.name}: {letter.error}",
                bucket=letter.bucket,
                key=letter.key,
                import_id=letter.import_id,
            )
            for letter in queue.shown
            if letter.key is not None
        ]
    return found


def _completed(record: IdempotencyRecord, emails: Mapping[str, Counter[str]]) -> ImportStatus:
    if record.field("status") == "skipped":
        outcome = f"skipped: {record.field('reason')}"
    elif record.field("fileError"):
        outcome = f"rejected file: {record.field('fileError')}"
    else:
        outcome = "processed"
    accounts = record.field("accounts")
    ident = record.field("importId")
    return ImportStatus(
        recorded_at=record.recorded_at,
        outcome=outcome,
        bucket=record.field("bucket"),
        key=record.field("key"),
        import_id=ident,
        rows_read=record.field("rowsRead"),
        rows_accepted=record.field("rowsAccepted"),
        rows_rejected=record.field("rowsRejected"),
        accounts=len(accounts) if isinstance(accounts, list) else None,
        emails=dict(emails.get(str(ident), {})),
    )


async def collect_status(
    *,
    dynamodb: DynamoDBClient,
    sqs: SQSClient,
    stack: deployment.Deployment,
    limit: int = 20,
    peek: int = 10,
) -> StatusReport:
    """Read the stack's idempotency table and dead-letter queues into a :class:`StatusReport`.

    ``limit`` bounds the imports listed; ``peek`` the messages described per queue.
    """
    table = stack.output(deployment.IDEMPOTENCY_TABLE)
    queues = [
        await _queue(sqs, output, purpose, stack.output(output), peek)
        for output, purpose in deployment.DLQ_OUTPUTS.items()
    ]
    imports = _imports(await _scan(dynamodb, table), queues, time.time())
    imports.sort(key=lambda i: i.recorded_at or 2**62, reverse=True)  # in progress first
    return StatusReport(stack.stack_name, tuple(imports[:limit]), tuple(queues))
