"""The DynamoDB transaction sink: SPEC §4 items written with ``BatchWriteItem``.

It uses the low-level client with typed attribute values: the resource layer's serializer
costs more per item than building the ``{"S": …}`` dicts directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stori_pipeline.ingest.keys import transaction_key
from stori_pipeline.ingest.resend import Leftover, resend_until_done
from stori_pipeline.records import Transaction
from stori_pipeline.retry import RetryPolicy

__all__ = [
    "MAX_BATCH_ITEMS",
    "DynamoDBTransactionSink",
    "transaction_item",
    "write_requests",
]

MAX_BATCH_ITEMS = 25

Item = dict[str, dict[str, str]]
RequestItems = dict[str, list[dict[str, Any]]]  # BatchWriteItem's RequestItems by table


def transaction_item(tx: Transaction, *, bucket: str, key: str, etag: str) -> Item:
    """The SPEC §4 item of one accepted row (``Year`` is absent when the date has none)."""
    item: Item = {
        "AccountId": {"S": tx.account_id},
        "TransactionKey": {"S": transaction_key(key, tx.transaction_id)},
        "TransactionId": {"S": tx.transaction_id},
        "Date": {"S": tx.date},
        "Month": {"N": str(tx.month)},
        "Amount": {"N": str(tx.amount)},
        "Kind": {"S": tx.kind},
        "SourceBucket": {"S": bucket},
        "SourceKey": {"S": key},
        "SourceETag": {"S": etag},
        "Line": {"N": str(tx.line)},
    }
    if tx.year is not None:
        item["Year"] = {"N": str(tx.year)}
    return item


class DynamoDBTransactionSink:
    """Writes batches of transactions of one object to the transactions table.

    Args:
        client: an aioboto3/aiobotocore DynamoDB client (owned by the caller).
        table: the table name.
        bucket: the source bucket (stored on every item).
        key: the source object key (stored, and the ``TransactionKey`` prefix).
        etag: the source ETag (stored).
        policy: attempts and backoff for unprocessed items and throttling.
    """

    def __init__(  # noqa: PLR0913 - every argument is a distinct piece of context
        self,
        client: Any,  # noqa: ANN401 - aiobotocore clients are untyped
        table: str,
        *,
        bucket: str,
        key: str,
        etag: str,
        policy: RetryPolicy,
    ) -> None:
        self._client = client
        self._table = table
        self._bucket = bucket
        self._key = key
        self._etag = etag
        self._policy = policy

    async def write(self, batch: Sequence[Transaction]) -> int:
        """Write up to 25 transactions; return how many distinct items were written."""
        if len(batch) > MAX_BATCH_ITEMS:
            raise ValueError(f"a batch holds at most {MAX_BATCH_ITEMS} items, got {len(batch)}")
        # A key appears at most once per request (DynamoDB rejects the whole request
        # otherwise); the later row wins, as it would with two sequential writes.
        by_key: dict[tuple[str, str], Item] = {}
        for tx in batch:
            item = transaction_item(tx, bucket=self._bucket, key=self._key, etag=self._etag)
            by_key[tx.account_id, item["TransactionKey"]["S"]] = item
        requests = [{"PutRequest": {"Item": item}} for item in by_key.values()]
        await self._send(requests)
        return len(requests)

    async def _send(self, requests: list[dict[str, Any]]) -> None:
        await write_requests(self._client, self._table, requests, policy=self._policy)


async def write_requests(
    client: Any,  # noqa: ANN401 - aiobotocore clients are untyped
    table: str,
    requests: list[dict[str, Any]],
    *,
    policy: RetryPolicy,
) -> None:
    """One ``BatchWriteItem`` of ≤ 25 put/delete requests, re-sending what is left over."""

    async def send(pending: RequestItems) -> Leftover[RequestItems]:
        response = await client.batch_write_item(RequestItems=pending)
        unprocessed: RequestItems = response.get("UnprocessedItems") or {}
        if not any(unprocessed.values()):
            return None
        count = sum(len(v) for v in unprocessed.values())
        return unprocessed, f"{count} items left unprocessed", None

    await resend_until_done(
        send,
        {table: requests},
        policy=policy,
        service="dynamodb",
        operation="BatchWriteItem",
    )
