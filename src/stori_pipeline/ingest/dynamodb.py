"""The DynamoDB transaction sink: SPEC §4 items written with ``BatchWriteItem``.

Two request paths behind one :class:`DynamoDBTransactionSink`, the same items and guarantees:

- **lean** (used whenever :func:`~stori_pipeline.ingest.lean_dynamodb.lean_client_for` accepts
  the client, which an aiobotocore client built as :func:`~stori_pipeline.ingest.ingest_object`
  builds it always is): each item is written straight as DynamoDB JSON text
  (:class:`ItemEncoder`) and the request is sent on the client's own connection pool with its
  own credentials. The SDK's request pipeline cost about three times the CPU of everything
  else in the ingest (README, "Performance").
- **SDK**: ``client.batch_write_item`` with typed attribute values (the resource layer's
  serializer costs more per item than building the ``{"S": …}`` dicts directly), for any other
  client.

Either way :func:`~stori_pipeline.ingest.resend.resend_until_done` re-sends
``UnprocessedItems`` and throttled requests with backoff, and errors are mapped by AWS error
code. On the lean path a request that got no usable answer (connection lost, timeout, HTTP 5xx,
CRC32 mismatch) is re-sent the same way — the SDK's own retry layer did that before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from stori_pipeline.ingest.keys import transaction_key, transaction_key_prefix
from stori_pipeline.ingest.lean_dynamodb import LeanDynamoDB, TransportError, lean_client_for
from stori_pipeline.ingest.resend import Leftover, error_code, resend_until_done
from stori_pipeline.records import Transaction
from stori_pipeline.retry import RetryPolicy

__all__ = [
    "MAX_BATCH_ITEMS",
    "DynamoDBTransactionSink",
    "ItemEncoder",
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


# The JSON string encoder json.dumps itself uses (C, ASCII-only output like botocore's).
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii


class ItemEncoder:
    """Writes ``{"PutRequest": {"Item": transaction_item(…)}}`` directly as JSON text.

    The parts that are the same for every row of an object (bucket, key, ETag, the
    ``TransactionKey`` prefix) are encoded once; per row only its own fields are quoted, with
    the C string encoder ``json.dumps`` uses. A property test pins ``json.loads`` of the text
    to :func:`transaction_item`.
    """

    __slots__ = ("_key_prefix", "_source")

    def __init__(self, *, bucket: str, key: str, etag: str) -> None:
        # Quoting is per character, so the quoted key prefix and the quoted id concatenate.
        self._key_prefix = _quote(transaction_key_prefix(key))[:-1]
        self._source = (
            f'"SourceBucket":{{"S":{_quote(bucket)}}},"SourceKey":{{"S":{_quote(key)}}},'
            f'"SourceETag":{{"S":{_quote(etag)}}},'
        )

    def put_request(self, tx: Transaction) -> str:
        """The JSON text of one row's ``PutRequest``."""
        cents = tx.amount_cents
        # money.format_cents inlined (a call per item was a third of this method's time).
        whole, frac = divmod(-cents if cents < 0 else cents, 100)
        if cents > 0:
            kind, amount = "credit", f"{whole}.{frac:02d}"
        else:
            kind, amount = ("debit", f"-{whole}.{frac:02d}") if cents else ("zero", "0.00")
        year = "" if tx.year is None else f',"Year":{{"N":"{tx.year}"}}'
        tid = _quote(tx.transaction_id)
        return (
            f'{{"PutRequest":{{"Item":{{"AccountId":{{"S":{_quote(tx.account_id)}}},'
            f'"TransactionKey":{{"S":{self._key_prefix}{tid[1:]}}},"TransactionId":{{"S":{tid}}},'
            f'"Date":{{"S":{_quote(tx.date)}}},"Month":{{"N":"{tx.month}"}},'
            f'"Amount":{{"N":"{amount}"}},"Kind":{{"S":"{kind}"}},{self._source}'
            f'"Line":{{"N":"{tx.line}"}}{year}}}}}}}'
        )


class DynamoDBTransactionSink:
    """Writes batches of transactions of one object to the transactions table.

    Args:
        client: an aioboto3/aiobotocore DynamoDB client (owned by the caller); when it is one
            the lean path understands, requests use its endpoint, credentials and connection
            pool without its request pipeline (see the module docstring). A
            :class:`~stori_pipeline.ingest.lean_dynamodb.LeanDynamoDB` is used as it is.
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
        self._lean: LeanDynamoDB | None = lean_client_for(client)
        self._encoder = ItemEncoder(bucket=bucket, key=key, etag=etag)
        self._body_head = f'{{"RequestItems":{{{_quote(table)}:['.encode()

    @property
    def lean(self) -> bool:
        """Whether requests go the lean path (else through the SDK client)."""
        return self._lean is not None

    async def write(self, batch: Sequence[Transaction]) -> int:
        """Write up to 25 transactions; return how many distinct items were written."""
        if len(batch) > MAX_BATCH_ITEMS:
            raise ValueError(f"a batch holds at most {MAX_BATCH_ITEMS} items, got {len(batch)}")
        if self._lean is not None:
            return await self._write_lean(self._lean, batch)
        # A key appears at most once per request (DynamoDB rejects the whole request
        # otherwise); the later row wins, as it would with two sequential writes.
        by_key: dict[tuple[str, str], Item] = {}
        for tx in batch:
            item = transaction_item(tx, bucket=self._bucket, key=self._key, etag=self._etag)
            by_key[tx.account_id, item["TransactionKey"]["S"]] = item
        requests = [{"PutRequest": {"Item": item}} for item in by_key.values()]
        await self._send(requests)
        return len(requests)

    async def _write_lean(self, lean: LeanDynamoDB, batch: Sequence[Transaction]) -> int:
        # The same one-request-per-key rule as the SDK path: the later row wins.
        by_key = {(tx.account_id, tx.transaction_id): tx for tx in batch}
        put_request = self._encoder.put_request
        requests = [put_request(tx) for tx in by_key.values()]
        head, table = self._body_head, self._table

        async def send(pending: list[str]) -> Leftover[list[str]]:
            body = b"%s%s]}}" % (head, ",".join(pending).encode())
            try:
                response = await lean.call("BatchWriteItem", body)
            except TransportError as exc:
                return pending, str(exc), None
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if status < 500:  # a 4xx: resend maps it by error code
                    raise
                # A 5xx without a throttling code (503 ServiceUnavailable, …) was retried by
                # the SDK's own retry layer; re-send it under the same policy.
                return pending, f"server error: {exc}", error_code(exc)
            unprocessed = (response.get("UnprocessedItems") or {}).get(table) or []
            if not unprocessed:
                return None
            left = [json.dumps(request, separators=(",", ":")) for request in unprocessed]
            return left, f"{len(left)} items left unprocessed", None

        await resend_until_done(
            send, requests, policy=self._policy, service="dynamodb", operation="BatchWriteItem"
        )
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
