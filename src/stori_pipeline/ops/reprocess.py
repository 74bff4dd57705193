"""``stori-pipeline reprocess s3://BUCKET/KEY``: run an already-processed object again.

Re-uploading the same bytes does nothing on purpose: the ingest is idempotent on bucket, key
and ETag for a day (:mod:`stori_pipeline.idempotency`), and each email on import and account
for an hour. To run an object again deliberately this command

1. checks the object is an upload of this stack (its transactions bucket, under
   ``incoming/``) and reads its current version and ETag (``HeadObject``);
2. deletes the ingest's idempotency record of that version — the id is computed from the
   event fields the handler keys on, in both spellings of the key (AWS URL-encodes keys in
   events, the emulator does not) — refusing while a run holds it, unless ``--force``;
3. deletes the email records of that import (found by ``importId``), so every account holder
   is emailed again rather than only those whose record has expired;
4. sends the ingest function the "Object Created" event S3 would have sent, as an
   asynchronous ``Invoke`` — the same path EventBridge takes, so Lambda's retries and the
   function's dead-letter queue apply (EventBridge itself refuses ``aws.*`` sources from
   ``PutEvents``).

It prints what is re-sent: items are rewritten under the same keys (the table ends as after
one ingest), the rejected-rows report is rewritten, every account's summary event is published
again and each account holder gets the email again. ``--dry-run`` prints the same without
changing anything.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote_plus

from stori_pipeline.idempotency import ingest_record_id
from stori_pipeline.ingest.keys import INCOMING_PREFIX, import_id
from stori_pipeline.ops import deployment
from stori_pipeline.ops._cli import EXIT_FAILED, EXIT_USAGE, CommandFailedError, literal
from stori_pipeline.ops.records import IdempotencyRecord

__all__ = [
    "ObjectVersion",
    "ReprocessReport",
    "object_created_event",
    "parse_s3_url",
    "reprocess",
]

# Marks the synthetic event in the function's logs (it is otherwise S3's shape).
REQUESTER = "stori-pipeline-reprocess"


class S3Client(Protocol):
    """The S3 call made here."""

    async def head_object(self, **kwargs: object) -> dict[str, Any]:
        """``HeadObject``."""


class DynamoDBClient(Protocol):
    """The idempotency-table calls made here."""

    async def get_item(self, **kwargs: object) -> dict[str, Any]:
        """``GetItem``."""

    async def delete_item(self, **kwargs: object) -> dict[str, Any]:
        """``DeleteItem``."""

    async def scan(self, **kwargs: object) -> dict[str, Any]:
        """``Scan``."""


class LambdaClient(Protocol):
    """The Lambda call made here."""

    async def invoke(self, **kwargs: object) -> dict[str, Any]:
        """``Invoke``."""


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    """The object version to run again, as ``HeadObject`` describes it (ETag unquoted)."""

    bucket: str
    key: str
    etag: str
    version_id: str | None
    size: int

    @property
    def import_id(self) -> str:
        """The ``importId`` its run publishes (SPEC §5)."""
        return import_id(self.bucket, self.key, self.etag)

    @property
    def event_keys(self) -> tuple[str, ...]:
        """The key as an event may spell it: URL-encoded (AWS) first, then raw (emulator)."""
        encoded = quote_plus(self.key, safe="/")
        return (encoded,) if encoded == self.key else (encoded, self.key)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``(bucket, key)`` of ``s3://BUCKET/KEY``; raises :class:`CommandFailedError` (usage)."""
    rest = url.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    if rest == url or not bucket or not key:
        raise CommandFailedError(f"{literal(url)!r} is not s3://BUCKET/KEY", EXIT_USAGE)
    return bucket, key


def object_created_event(
    obj: ObjectVersion, *, function_arn: str, event_id: str, now: datetime
) -> dict[str, Any]:
    """The EventBridge "Object Created" event S3 sends for ``obj`` (AWS's spelling).

    Region and account come from the function's ARN (the bucket is in the stack's region).
    """
    parts = function_arn.split(":")
    region, account = (parts[3], parts[4]) if len(parts) > 4 else ("", "")
    obj_detail: dict[str, Any] = {
        "key": obj.event_keys[0],
        "size": obj.size,
        "etag": obj.etag,
        # No sequencer: S3's is unknown here, and a made-up one would order this run of the
        # current version before it; without one the version ledger keeps the committed order.
    }
    if obj.version_id is not None:
        obj_detail["version-id"] = obj.version_id
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": account,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:s3:::{obj.bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": obj.bucket},
            "object": obj_detail,
            "request-id": event_id,
            "requester": REQUESTER,
            "reason": "PutObject",
        },
    }


@dataclass(frozen=True, slots=True)
class ReprocessReport:
    """What ``reprocess`` found, removed and sent (or, with ``dry_run``, would have)."""

    object: ObjectVersion
    function_arn: str
    ingest_records: tuple[IdempotencyRecord, ...]
    email_records: tuple[IdempotencyRecord, ...]
    event: Mapping[str, Any]
    dry_run: bool

    def statement(self) -> list[str]:
        """The lines telling the operator what was (or would be) done and re-sent."""
        obj = self.object
        would = "would " if self.dry_run else ""
        version = f", version {obj.version_id}" if obj.version_id else ""
        lines = [
            f"{'dry run: ' if self.dry_run else ''}reprocessing s3://{obj.bucket}/{obj.key}",
            f"  ETag {obj.etag}{version}, {obj.size:,} bytes; importId {obj.import_id}",
        ]
        lines += [
            f"  {would}remove the ingest's idempotency record: {_last(record)}"
            for record in self.ingest_records
        ] or ["  no ingest idempotency record was held (expired, or never completed)"]
        lines.append(
            f"  {would}remove {len(self.email_records)} email idempotency record(s) of this import"
        )
        function = self.function_arn.rsplit(":", 1)[-1]
        sent = "would send" if self.dry_run else "sent"
        invoke = "asynchronous Invoke: Lambda retries twice, then its dead-letter queue"
        lines += [
            f"  {sent} {function} an 'Object Created' event ({invoke})",
            "what is re-sent:",
            "  - every accepted row is written again under the same keys (idempotent);",
            "  - the rejected-rows report is rewritten (removed when no row is rejected);",
            "  - one 'Transactions Summarized' event per account is published again, so",
            "  - every account holder in the file is emailed again" + _accounts(self),
            "follow it with: stori-pipeline status",
        ]
        return [literal(line) for line in lines]

    def to_json(self) -> dict[str, Any]:
        """A JSON view (``--json``)."""
        return {
            "bucket": self.object.bucket,
            "key": self.object.key,
            "etag": self.object.etag,
            "versionId": self.object.version_id,
            "importId": self.object.import_id,
            "dryRun": self.dry_run,
            "removedIngestRecords": [r.id for r in self.ingest_records],
            "removedEmailRecords": [r.id for r in self.email_records],
            "functionArn": self.function_arn,
            "event": dict(self.event),
        }


def _last(record: IdempotencyRecord) -> str:
    if record.status != "COMPLETED":
        return f"{record.status.lower() or 'unknown status'}"
    if record.field("status") == "skipped":
        return f"last run skipped it ({record.field('reason')})"
    if record.field("fileError"):
        return f"last run rejected the file ({record.field('fileError')})"
    accounts = record.field("accounts") or []
    return (
        f"last run read {record.field('rowsRead') or 0:,} rows, accepted "
        f"{record.field('rowsAccepted') or 0:,}, {len(accounts)} account(s)"
    )


def _accounts(report: ReprocessReport) -> str:
    for record in report.ingest_records:
        accounts = record.field("accounts")
        if isinstance(accounts, list):
            return f" ({len(accounts)} account(s) in the last run)."
    return "."


async def _head(s3: S3Client, bucket: str, key: str) -> ObjectVersion:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    try:
        head = await s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in {"404", "NoSuchKey", "NotFound"}:
            raise CommandFailedError(f"no object s3://{bucket}/{key}", EXIT_FAILED) from exc
        raise
    return ObjectVersion(
        bucket=bucket,
        key=key,
        etag=str(head["ETag"]).strip('"'),
        version_id=head.get("VersionId"),
        size=int(head.get("ContentLength", 0)),
    )


async def _records_of(
    dynamodb: DynamoDBClient, table: str, obj: ObjectVersion
) -> tuple[list[IdempotencyRecord], list[IdempotencyRecord]]:
    ingest = []
    for event_key in obj.event_keys:
        record_id = ingest_record_id(obj.bucket, event_key, obj.etag)
        found = await dynamodb.get_item(
            TableName=table, Key={"id": {"S": record_id}}, ConsistentRead=True
        )
        if "Item" in found:
            ingest.append(IdempotencyRecord.from_item(found["Item"]))
    email = []
    # The email records' ids hash the import and account under a prefix that depends on the
    # function's name and module; their stored result names the import, so search by that.
    kwargs: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "contains(#data, :import)",
        "ExpressionAttributeNames": {"#data": "data"},
        "ExpressionAttributeValues": {":import": {"S": obj.import_id}},
    }
    while True:
        page = await dynamodb.scan(**kwargs)
        for item in page.get("Items", []):
            record = IdempotencyRecord.from_item(item)
            if record.is_email and record.field("importId") == obj.import_id:
                email.append(record)
        if "LastEvaluatedKey" not in page:
            return ingest, email
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _running(records: Sequence[IdempotencyRecord], now: float) -> bool:
    return any(
        r.status == "INPROGRESS" and (r.in_progress_until or 0) > now * 1000 for r in records
    )


async def reprocess(  # noqa: PLR0913 - the three clients, the stack and the two switches
    *,
    s3: S3Client,
    dynamodb: DynamoDBClient,
    lambda_client: LambdaClient,
    stack: deployment.Deployment,
    url: str,
    dry_run: bool = False,
    force: bool = False,
) -> ReprocessReport:
    """Run the object at ``url`` through the stack's ingest function again (see the module).

    Raises:
        CommandFailedError: not this stack's upload, no such object, a run in progress
            (without ``force``), or Lambda did not accept the event.
    """
    bucket, key = parse_s3_url(url)
    expected_bucket = stack.output(deployment.TRANSACTIONS_BUCKET)
    if bucket != expected_bucket:
        raise CommandFailedError(
            f"{bucket!r} is not the transactions bucket of stack {stack.stack_name!r} "
            f"({expected_bucket!r})",
            EXIT_USAGE,
        )
    if not key.startswith(INCOMING_PREFIX):
        raise CommandFailedError(
            f"only keys under {INCOMING_PREFIX} are processed; {key!r} is not one", EXIT_USAGE
        )
    table = stack.output(deployment.IDEMPOTENCY_TABLE)
    function_arn = stack.output(deployment.INGEST_FUNCTION)
    obj = await _head(s3, bucket, key)
    ingest, email = await _records_of(dynamodb, table, obj)
    if _running(ingest, time.time()) and not force:
        raise CommandFailedError(
            "a run of this object is in progress; wait for it, or pass --force", EXIT_FAILED
        )
    event = object_created_event(
        obj, function_arn=function_arn, event_id=str(uuid.uuid4()), now=datetime.now(UTC)
    )
    if not dry_run:
        for record in (*ingest, *email):
            await dynamodb.delete_item(TableName=table, Key={"id": {"S": record.id}})
        response = await lambda_client.invoke(
            FunctionName=function_arn,
            InvocationType="Event",
            Payload=json.dumps(event).encode(),
        )
        payload = response.get("Payload")
        if payload is not None:  # read it, or its pooled connection is never released
            async with payload as body:
                await body.read()
        if response.get("StatusCode") != 202 or response.get("FunctionError"):
            raise CommandFailedError(
                f"Lambda did not queue the event (status {response.get('StatusCode')})"
            )
    return ReprocessReport(
        object=obj,
        function_arn=function_arn,
        ingest_records=tuple(ingest),
        email_records=tuple(email),
        event=event,
        dry_run=dry_run,
    )
