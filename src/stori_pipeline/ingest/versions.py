"""One object key, one current version: a new version's rows replace the old version's.

S3 overwrites keep old versions (the bucket is versioned) and deliver "Object Created" at
least once and in any order, so the ingest must decide which version of a key the table
shows. The decision lives in the **objects table** (``OBJECTS_TABLE``), kept apart from the
transactions table so that table holds transactions only. Per object (``ObjectId`` =
``<bucket>/<key>``, bucket names cannot hold ``/``) it has:

- the **marker** (``Entry = "version"``): the committed version (``Sequencer``, ``ETag``,
  ``VersionId``) and the lease of the version being ingested now (``LeaseETag``,
  ``LeaseSequencer``, ``LeaseExpires``);
- one **account entry** per account a version wrote to (``Entry = "account#<AccountId>"``,
  with that version's ``ETag``): where the previous version's items are, without a scan or an
  index (a marker attribute would cap a file at ~6,000 accounts: items are ≤ 400 KB).

The life of one version (:class:`VersionLedger`)::

    acquire  conditional UpdateItem: take the lease unless a newer version is committed or
             holds it (-> ObjectSupersededError, permanent, nothing written); an older or
             unordered version holding it is waited for (-> ObjectBusyError when too long)
    (the pipeline writes this version's items)
    replace  record this version's accounts; Query each recorded account's partition with
             begins_with(TransactionKey, <key prefix>) and delete the items of this key with
             another SourceETag (BatchWriteItem deletes); drop the other versions' entries;
             commit the marker and release the lease (conditional on still holding it)
    (the pipeline publishes the events)

Order comes from the event's ``sequencer`` (``keys.normalize_sequencer``); S3 always sends
one. Without it a version cannot be ordered and is accepted (last processed wins). Two
versions never write one key's items at the same time — the lease serializes them — so a
row with the same Id in both can never be overwritten by the older one after the newer
version's cleanup. Each step is idempotent: a retry after a crash redoes it safely.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from stori_pipeline.errors import AwsOperationError, PermanentError, StoriPipelineError
from stori_pipeline.ingest.dynamodb import MAX_BATCH_ITEMS, write_requests
from stori_pipeline.ingest.keys import transaction_key_prefix
from stori_pipeline.ingest.resend import Leftover, resend_until_done
from stori_pipeline.retry import RetryPolicy

__all__ = [
    "ACCOUNT_ENTRY_PREFIX",
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_WAIT_SECONDS",
    "MARKER_ENTRY",
    "LeaseLostError",
    "ObjectBusyError",
    "ObjectSupersededError",
    "ObjectVersion",
    "VersionLedger",
]

logger = logging.getLogger(__name__)

MARKER_ENTRY = "version"
ACCOUNT_ENTRY_PREFIX = "account#"
# Longer than the ingest function's 900 s timeout: a lease outlives its holder only when the
# holder crashed, and then it expires on its own.
DEFAULT_LEASE_SECONDS = 960
# How long a newer version waits for an older one still being ingested, before it fails
# transiently (Lambda retries it later); leaves most of the 900 s for its own work.
DEFAULT_WAIT_SECONDS = 300
_POLL_SECONDS = 2.0
# Accounts cleaned at once: each is a Query then BatchWriteItem deletes.
_CLEAN_CONCURRENCY = 16
_CONDITION_FAILED = "ConditionalCheckFailedException"


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    """One version of one object, as its "Object Created" event names it.

    ``sequencer`` is normalized (``keys.normalize_sequencer``) or ``None`` when unknown.
    """

    bucket: str
    key: str
    etag: str
    sequencer: str | None = None
    version_id: str | None = None

    @property
    def object_id(self) -> str:
        """The objects table's partition key of this object."""
        return f"{self.bucket}/{self.key}"


class ObjectSupersededError(PermanentError):
    """A newer version of the object is already ingested, or being ingested: skip this one.

    Nothing of this version is written and no event is published; no retry could change it.
    """

    def __init__(self, version: ObjectVersion, *, newer_etag: str | None, state: str) -> None:
        self.version = version
        self.newer_etag = newer_etag
        self.state = state
        super().__init__(
            f"s3://{version.bucket}/{version.key} (ETag {version.etag}) is older than the "
            f"version {state} (ETag {newer_etag}); its rows are not stored"
        )


class ObjectBusyError(StoriPipelineError):
    """Another version of the object is still being ingested; retry later (transient)."""

    def __init__(self, version: ObjectVersion, *, holder_etag: str | None, waited: float) -> None:
        self.version = version
        self.holder_etag = holder_etag
        super().__init__(
            f"s3://{version.bucket}/{version.key}: version {holder_etag} is still being "
            f"ingested after {waited:.0f} s; ETag {version.etag} will be retried"
        )


class LeaseLostError(StoriPipelineError):
    """The lease expired and another version took it before this one committed (transient)."""


@dataclass(frozen=True, slots=True)
class _Marker:
    sequencer: str | None
    etag: str | None
    lease_etag: str | None
    lease_sequencer: str | None
    lease_expires: float | None

    @classmethod
    def from_item(cls, item: dict[str, Any] | None) -> _Marker:
        item = item or {}

        def text(name: str) -> str | None:
            value = item.get(name, {}).get("S")
            return value if isinstance(value, str) else None

        expires = item.get("LeaseExpires", {}).get("N")
        return cls(
            text("Sequencer"),
            text("ETag"),
            text("LeaseETag"),
            text("LeaseSequencer"),
            float(expires) if expires is not None else None,
        )


class VersionLedger:
    """The version bookkeeping of one object version; see the module docstring.

    Call :meth:`acquire` before writing items, :meth:`replace` after every item is written
    and before publishing events, and :meth:`release` when the ingest fails in between.

    Args:
        client: an aioboto3/aiobotocore DynamoDB client (owned by the caller).
        objects_table: the objects table.
        transactions_table: the transactions table.
        version: the version being ingested.
        policy: attempts and backoff for throttling and unprocessed items.
        lease_seconds: how long the lease lasts (longer than the whole ingest may take).
        wait_seconds: how long :meth:`acquire` waits for an older version still in progress.
        clock: seconds since the epoch (tests pass a fake).
    """

    def __init__(  # noqa: PLR0913 - distinct pieces of context, all keyword-only but the client
        self,
        client: Any,  # noqa: ANN401 - aiobotocore clients are untyped
        *,
        objects_table: str,
        transactions_table: str,
        version: ObjectVersion,
        policy: RetryPolicy,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._objects = objects_table
        self._transactions = transactions_table
        self.version = version
        self._policy = policy
        self._lease_seconds = lease_seconds
        self._wait_seconds = wait_seconds
        self._clock = clock
        self._committed = False

    # --- acquire ---------------------------------------------------------------------------

    async def acquire(self) -> bool:
        """Take the object's lease; return whether it had to wait for another version.

        Raises:
            ObjectSupersededError: a newer version is committed or holds the lease (permanent).
            ObjectBusyError: an older or unordered version held the lease past ``wait_seconds``.
            AwsOperationError: DynamoDB failed.
        """
        started = self._clock()
        waited = False
        while True:
            if await self._try_acquire():
                return waited
            marker = await self._marker()
            self._refuse_if_superseded(marker)
            elapsed = self._clock() - started
            if elapsed >= self._wait_seconds:
                raise ObjectBusyError(self.version, holder_etag=marker.lease_etag, waited=elapsed)
            logger.info(
                "waiting for version %s of %s to finish", marker.lease_etag, self.version.key
            )
            waited = True
            await asyncio.sleep(min(_POLL_SECONDS, self._wait_seconds - elapsed))

    async def _try_acquire(self) -> bool:
        version = self.version
        now = self._clock()
        values: dict[str, Any] = {
            ":e": {"S": version.etag},
            ":now": {"N": _seconds(now)},
            ":x": {"N": _seconds(now + self._lease_seconds)},
        }
        # The lease is free, expired, or already ours (a retry of this same content).
        condition = "(attribute_not_exists(LeaseETag) OR LeaseExpires < :now OR LeaseETag = :e)"
        update = "SET LeaseETag = :e, LeaseExpires = :x"
        if version.sequencer is not None:
            values[":s"] = {"S": version.sequencer}
            # Equal sequencers (a repeated delivery; moto's constant) are not "older".
            condition += " AND (attribute_not_exists(Sequencer) OR Sequencer <= :s)"
            update += ", LeaseSequencer = :s"
        else:
            update += " REMOVE LeaseSequencer"
        try:
            await self._update(update, condition, values)
        except AwsOperationError as exc:
            if exc.code == _CONDITION_FAILED:
                return False
            raise
        return True

    def _refuse_if_superseded(self, marker: _Marker) -> None:
        mine = self.version.sequencer
        if mine is None:
            return
        if marker.sequencer is not None and marker.sequencer > mine:
            raise ObjectSupersededError(self.version, newer_etag=marker.etag, state="ingested")
        lease_live = marker.lease_expires is not None and marker.lease_expires >= self._clock()
        if (
            lease_live
            and marker.lease_etag != self.version.etag
            and marker.lease_sequencer is not None
            and marker.lease_sequencer > mine
        ):
            raise ObjectSupersededError(
                self.version, newer_etag=marker.lease_etag, state="being ingested"
            )

    # --- replace ---------------------------------------------------------------------------

    async def replace(self, accounts: Iterable[str]) -> int:
        """Make this version the object's only rows; return how many old items were deleted.

        Call after every item of this version is written and before its events.

        Raises:
            LeaseLostError: another version took the lease (transient: retry the ingest).
            AwsOperationError: DynamoDB failed.
        """
        mine = sorted(set(accounts))
        etag = self.version.etag
        # Read before recording this version's accounts, which overwrites an older version's
        # entry for a shared account: every account any earlier attempt wrote to is here.
        entries = await self._entries()
        await self._put_entries(mine)
        marker = await self._marker()
        others = [account for account, entry_etag in entries.items() if entry_etag != etag]
        if others or marker.etag not in (None, etag):
            # Old rows can only be where some version recorded writing; accounts only this
            # version has are not read back (a first version costs no Query at all).
            deleted = await self._clean(sorted(entries))
        else:
            deleted = 0
        stale = [a for a in others if a not in set(mine)]
        await self._delete_entries(stale)
        await self._commit()
        return deleted

    async def _put_entries(self, accounts: Sequence[str]) -> None:
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "ObjectId": {"S": self.version.object_id},
                        "Entry": {"S": f"{ACCOUNT_ENTRY_PREFIX}{account}"},
                        "ETag": {"S": self.version.etag},
                    }
                }
            }
            for account in accounts
        ]
        await self._write_all(self._objects, requests)

    async def _delete_entries(self, accounts: Sequence[str]) -> None:
        requests = [
            {
                "DeleteRequest": {
                    "Key": {
                        "ObjectId": {"S": self.version.object_id},
                        "Entry": {"S": f"{ACCOUNT_ENTRY_PREFIX}{account}"},
                    }
                }
            }
            for account in accounts
        ]
        await self._write_all(self._objects, requests)

    async def _entries(self) -> dict[str, str]:
        """Account -> ETag of every account entry of the object."""
        entries: dict[str, str] = {}
        params: dict[str, Any] = {
            "TableName": self._objects,
            "KeyConditionExpression": "ObjectId = :o AND begins_with(#entry, :p)",
            "ExpressionAttributeNames": {"#entry": "Entry"},
            "ExpressionAttributeValues": {
                ":o": {"S": self.version.object_id},
                ":p": {"S": ACCOUNT_ENTRY_PREFIX},
            },
            "ConsistentRead": True,
        }
        async for item in self._query(params):
            account = item["Entry"]["S"][len(ACCOUNT_ENTRY_PREFIX) :]
            entries[account] = item.get("ETag", {}).get("S", "")
        return entries

    async def _clean(self, accounts: Sequence[str]) -> int:
        limit = asyncio.Semaphore(_CLEAN_CONCURRENCY)

        async def clean(account: str) -> int:
            async with limit:
                return await self._clean_account(account)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(clean(account)) for account in accounts]
        except ExceptionGroup as failure:
            raise failure.exceptions[0] from failure
        # Each task's own count: a shared counter updated across awaits loses updates.
        return sum(task.result() for task in tasks)

    async def _clean_account(self, account: str) -> int:
        version = self.version
        params: dict[str, Any] = {
            "TableName": self._transactions,
            "KeyConditionExpression": "AccountId = :a AND begins_with(TransactionKey, :p)",
            # Another key may share the prefix ("a.csv" and "a.csv#b.csv"): match the key too.
            "FilterExpression": "SourceKey = :k AND SourceETag <> :e",
            "ProjectionExpression": "AccountId, TransactionKey",
            "ExpressionAttributeValues": {
                ":a": {"S": account},
                ":p": {"S": transaction_key_prefix(version.key)},
                ":k": {"S": version.key},
                ":e": {"S": version.etag},
            },
            "ConsistentRead": True,
        }
        requests = [{"DeleteRequest": {"Key": item}} async for item in self._query(params)]
        await self._write_all(self._transactions, requests)
        return len(requests)

    async def _commit(self) -> None:
        version = self.version
        values: dict[str, Any] = {
            ":e": {"S": version.etag},
            ":at": {"N": _seconds(self._clock())},
        }
        update = "SET #etag = :e, CommittedAt = :at"
        if version.sequencer is not None:
            values[":s"] = {"S": version.sequencer}
            update += ", Sequencer = :s"
        if version.version_id is not None:
            values[":v"] = {"S": version.version_id}
            update += ", VersionId = :v"
        update += " REMOVE LeaseETag, LeaseSequencer, LeaseExpires"
        try:
            await self._update(update, "LeaseETag = :e", values, names={"#etag": "ETag"})
        except AwsOperationError as exc:
            if exc.code == _CONDITION_FAILED:
                raise LeaseLostError(
                    f"s3://{version.bucket}/{version.key}: the lease of ETag {version.etag} "
                    "was taken by another version before commit"
                ) from exc
            raise
        self._committed = True

    # --- release ---------------------------------------------------------------------------

    async def release(self) -> None:
        """Give the lease back after a failed ingest (best effort: it also expires).

        Works from another process than :meth:`acquire` (a distributed ingest's failure
        handler): only a lease held for this ETag is removed, and none after this ledger
        committed.
        """
        if self._committed:
            return
        try:
            await self._update(
                "REMOVE LeaseETag, LeaseSequencer, LeaseExpires",
                "LeaseETag = :e",
                {":e": {"S": self.version.etag}},
            )
        except AwsOperationError as exc:
            if exc.code != _CONDITION_FAILED:  # not held (any more): nothing to give back
                logger.warning("could not release the lease of %s: %s", self.version.key, exc)

    # --- DynamoDB calls --------------------------------------------------------------------

    @property
    def _marker_key(self) -> dict[str, Any]:
        return {"ObjectId": {"S": self.version.object_id}, "Entry": {"S": MARKER_ENTRY}}

    async def _update(
        self,
        update: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> None:
        extra = {"ExpressionAttributeNames": names} if names else {}

        async def send(_: None) -> Leftover[None]:
            await self._client.update_item(
                TableName=self._objects,
                Key=self._marker_key,
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                **extra,
            )
            return None

        await resend_until_done(
            send, None, policy=self._policy, service="dynamodb", operation="UpdateItem"
        )

    async def _marker(self) -> _Marker:
        found: list[dict[str, Any] | None] = [None]

        async def send(_: None) -> Leftover[None]:
            response = await self._client.get_item(
                TableName=self._objects, Key=self._marker_key, ConsistentRead=True
            )
            found[0] = response.get("Item")
            return None

        await resend_until_done(
            send, None, policy=self._policy, service="dynamodb", operation="GetItem"
        )
        return _Marker.from_item(found[0])

    async def _query(self, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Every item a ``Query`` matches, page by page."""
        start: dict[str, Any] = {}
        while True:
            page = await self._query_page({**params, **start})
            for item in page.get("Items", []):
                yield item
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            start = {"ExclusiveStartKey": last}

    async def _query_page(self, params: dict[str, Any]) -> dict[str, Any]:
        page: list[dict[str, Any]] = [{}]

        async def send(_: None) -> Leftover[None]:
            page[0] = await self._client.query(**params)
            return None

        await resend_until_done(
            send, None, policy=self._policy, service="dynamodb", operation="Query"
        )
        return page[0]

    async def _write_all(self, table: str, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), MAX_BATCH_ITEMS):
            await write_requests(
                self._client, table, requests[start : start + MAX_BATCH_ITEMS], policy=self._policy
            )


def _seconds(value: float) -> str:
    return f"{value:.3f}"
