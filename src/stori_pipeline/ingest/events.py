"""The "Transactions Summarized" events (SPEC §5) and their EventBridge publisher.

Every account gets its event, however large its summary: a detail that would pass
EventBridge's 256 KB entry limit (an account with dates over 1900-2100 has 2,412 months) is
sent by **claim check** — the full summary is stored in S3 (``summaries/<importId>/<account>
.json`` in the transactions bucket, a prefix the processing rule never matches) and the event
carries ``schemaVersion`` 2 with a reference to it instead of the summary::

    {"schemaVersion": 2, "importId": …, "source": {…}, "rowsRejected": …,
     "accountId": "…", "summaryRef": {"bucket": "…", "key": "summaries/…", "bytes": …}}

Every other event stays ``schemaVersion`` 1, byte for byte what it was. :func:`summary_entries`
builds the entries of one import either way; both ingest paths call it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from stori_pipeline.errors import PermanentError
from stori_pipeline.ingest.keys import summary_key
from stori_pipeline.ingest.resend import Leftover, resend_until_done
from stori_pipeline.retry import RetryPolicy
from stori_pipeline.summary import AccountSummaries, AccountSummary

__all__ = [
    "DETAIL_TYPE",
    "EVENT_SOURCE",
    "MAX_ENTRIES_PER_CALL",
    "MAX_ENTRY_BYTES",
    "REFERENCE_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "EventBridgePublisher",
    "EventTooLargeError",
    "SummaryStore",
    "reference_detail",
    "summary_detail",
    "summary_entries",
]

EVENT_SOURCE = "stori.pipeline"
DETAIL_TYPE = "Transactions Summarized"
SCHEMA_VERSION = 1
# The claim-check shape: the summary in S3, a reference in the event.
REFERENCE_SCHEMA_VERSION = 2
MAX_ENTRIES_PER_CALL = 10
MAX_ENTRY_BYTES = 256 * 1024
# EventBridge counts the Time field as 14 bytes whether or not it is set.
_TIME_BYTES = 14


class EventTooLargeError(PermanentError):
    """An event entry would exceed EventBridge's 256 KB limit; no retry can shrink it."""

    def __init__(self, account_id: str, size: int) -> None:
        self.account_id = account_id
        self.size = size
        super().__init__(
            f"the summary event of account {account_id!r} is {size} bytes "
            f"(EventBridge allows fewer than {MAX_ENTRY_BYTES})"
        )


def summary_detail(  # noqa: PLR0913 - the detail's fields, each named as in SPEC §5
    *,
    import_id: str,
    bucket: str,
    key: str,
    etag: str,
    rows_rejected: int,
    summary: AccountSummary,
) -> dict[str, object]:
    """The SPEC §5 ``detail`` of one account's event."""
    return {
        "schemaVersion": SCHEMA_VERSION,
        "importId": import_id,
        "source": {"bucket": bucket, "key": key, "etag": etag},
        "rowsRejected": rows_rejected,
        "summary": summary.to_json(),
    }


def reference_detail(  # noqa: PLR0913 - the detail's fields, each named as in SPEC §5
    *,
    import_id: str,
    bucket: str,
    key: str,
    etag: str,
    rows_rejected: int,
    account_id: str,
    summary_ref: dict[str, object],
) -> dict[str, object]:
    """The ``schemaVersion`` 2 detail: the summary stored at ``summary_ref``, not inline."""
    return {
        "schemaVersion": REFERENCE_SCHEMA_VERSION,
        "importId": import_id,
        "source": {"bucket": bucket, "key": key, "etag": etag},
        "rowsRejected": rows_rejected,
        "accountId": account_id,
        "summaryRef": summary_ref,
    }


class SummaryStore(Protocol):
    """Stores a claim-checked summary (``claim_check.S3SummaryStore``)."""

    async def put(self, key: str, body: bytes) -> dict[str, object]:
        """Store ``body`` at ``key``; return the reference the event carries."""
        ...


class EntryBuilder(Protocol):
    """Builds a ``PutEvents`` entry (``EventBridgePublisher.entry``)."""

    def entry(self, detail: dict[str, object], account_id: str) -> dict[str, Any]:
        """The entry; raises :class:`EventTooLargeError` when it is too large to send."""
        ...


async def summary_entries(  # noqa: PLR0913 - the import's identity plus two ports
    publisher: EntryBuilder,
    store: SummaryStore,
    *,
    import_id: str,
    bucket: str,
    key: str,
    etag: str,
    rows_rejected: int,
    summaries: Iterable[AccountSummary],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The ``PutEvents`` entries of one import, one per account, and the claim-checked accounts.

    A summary too large for an entry is stored with ``store`` first (so the event never
    names a missing object) and referenced from a ``schemaVersion`` 2 detail. Summaries read
    from a file (:class:`~stori_pipeline.summary.AccountSummaries`) given a publisher with
    ``entry_text`` (:class:`EventBridgePublisher`) are written straight from the ledger's
    buckets, one account at a time: the same bytes, without the frozen summary or its dicts.
    """
    entries: list[dict[str, Any]] = []
    referenced: list[str] = []
    entry_text = getattr(publisher, "entry_text", None)
    if isinstance(summaries, AccountSummaries) and entry_text is not None:
        # Straight from the ledger's integer buckets: each summary's JSON text, and the
        # detail around it written once (the same bytes as json.dumps of summary_detail).
        head = json.dumps(
            {
                "schemaVersion": SCHEMA_VERSION,
                "importId": import_id,
                "source": {"bucket": bucket, "key": key, "etag": etag},
                "rowsRejected": rows_rejected,
                "summary": None,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).removesuffix("null}")
        texts = summaries.json_texts(compact=True)
        pairs: Iterable[tuple[str, str | AccountSummary]] = zip(
            summaries.account_ids(), texts, strict=True
        )
    else:
        pairs = ((summary.account_id, summary) for summary in summaries)
    for account_id, summary in pairs:
        try:
            if isinstance(summary, str):
                entries.append(entry_text(head + summary + "}", account_id))  # type: ignore[misc]
            else:
                detail = summary_detail(
                    import_id=import_id,
                    bucket=bucket,
                    key=key,
                    etag=etag,
                    rows_rejected=rows_rejected,
                    summary=summary,
                )
                entries.append(publisher.entry(detail, account_id))
            continue
        except EventTooLargeError:
            pass
        text = (
            summary
            if isinstance(summary, str)
            else json.dumps(summary.to_json(), separators=(",", ":"), ensure_ascii=False)
        )
        ref = await store.put(summary_key(import_id, account_id), text.encode())
        detail = reference_detail(
            import_id=import_id,
            bucket=bucket,
            key=key,
            etag=etag,
            rows_rejected=rows_rejected,
            account_id=account_id,
            summary_ref=ref,
        )
        # Still too large only if the key itself is absurd: no retry can help (permanent).
        entries.append(publisher.entry(detail, account_id))
        referenced.append(account_id)
    return entries, referenced


def _entry_size(entry: dict[str, Any]) -> int:
    # EventBridge's documented entry-size rule: UTF-8 bytes of Source, DetailType, Detail,
    # each Resource, plus 14 for Time.
    size = _TIME_BYTES
    for name in ("Source", "DetailType", "Detail"):
        size += len(entry.get(name, "").encode())
    size += sum(len(r.encode()) for r in entry.get("Resources", ()))
    return size


class EventBridgePublisher:
    """Publishes ``Transactions Summarized`` events, ≤ 10 per ``PutEvents`` call.

    Entries that fail (``FailedEntryCount`` > 0) are re-sent alone, with backoff, until they
    succeed or the policy's attempts run out (:class:`RetriesExhaustedError`).

    Args:
        client: an aioboto3/aiobotocore EventBridge client (owned by the caller).
        bus_name: the event bus.
        policy: attempts and backoff.
    """

    def __init__(
        self,
        client: Any,  # noqa: ANN401 - aiobotocore clients are untyped
        bus_name: str,
        *,
        policy: RetryPolicy,
    ) -> None:
        self._client = client
        self._bus = bus_name
        self._policy = policy

    def entry(self, detail: dict[str, object], account_id: str) -> dict[str, Any]:
        """The ``PutEvents`` entry of one detail; raises :class:`EventTooLargeError`."""
        return self.entry_text(
            json.dumps(detail, separators=(",", ":"), ensure_ascii=False), account_id
        )

    def entry_text(self, detail: str, account_id: str) -> dict[str, Any]:
        """:meth:`entry` of a detail already written as compact JSON text."""
        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": DETAIL_TYPE,
            "Detail": detail,
            "EventBusName": self._bus,
        }
        size = _entry_size(entry)
        if size >= MAX_ENTRY_BYTES:
            raise EventTooLargeError(account_id, size)
        return entry

    async def publish(self, entries: Sequence[dict[str, Any]]) -> int:
        """Send every entry; return how many were published."""
        for start in range(0, len(entries), MAX_ENTRIES_PER_CALL):
            await self._send(list(entries[start : start + MAX_ENTRIES_PER_CALL]))
        return len(entries)

    async def _send(self, entries: list[dict[str, Any]]) -> None:
        async def send(pending: list[dict[str, Any]]) -> Leftover[list[dict[str, Any]]]:
            response = await self._client.put_events(Entries=pending)
            if not response.get("FailedEntryCount"):
                return None
            # Results are positional: entry i of the response is entry i of the request.
            failed = [
                (entry, result)
                for entry, result in zip(pending, response["Entries"], strict=True)
                if result.get("ErrorCode")
            ]
            if not failed:
                return None
            code = failed[0][1].get("ErrorCode")
            return [entry for entry, _ in failed], f"{len(failed)} entries failed", code

        await resend_until_done(
            send, entries, policy=self._policy, service="events", operation="PutEvents"
        )
