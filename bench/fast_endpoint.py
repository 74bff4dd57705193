"""A fast, stateful stand-in for every AWS call ``ingest_object`` makes (``--fast`` mode).

It runs in its own process, so the benchmark measures only the client. It is minimal, but it
is faithful to what the pipeline relies on, so a run that exercises a broken path fails
instead of printing a fast number:

- **DynamoDB** (JSON 1.0; every answer carries ``x-amz-crc32``, which both client paths
  check): ``CreateTable``/``DeleteTable`` (the key schema), ``BatchWriteItem`` (puts and
  deletes, several tables, nothing left unprocessed), ``PutItem``, ``GetItem``,
  ``DeleteItem``, ``UpdateItem`` (``SET``/``REMOVE``, ``ConditionExpression``:
  ``ConditionalCheckFailedException`` when it is false, as the version ledger expects),
  ``Query`` (key condition, filter, projection, range-key order; one page) and ``Scan`` with
  ``Select=COUNT`` (how the benchmark checks what was stored). Items are kept as compact
  JSON text, so 100,000 of them take tens of MB rather than hundreds.
- **Expressions**: the subset ``ingest/versions.py`` writes — ``AND``/``OR``/``NOT``,
  parentheses, ``= <> < <= > >=``, ``attribute_exists``, ``attribute_not_exists``,
  ``begins_with``, ``#names`` and ``:values``. A comparison with a missing attribute is false.
  Anything else answers ``ValidationException``, so a new expression fails loudly instead of
  being misread.
- **EventBridge** ``PutEvents``: every entry accepted (at most 10 per call, as AWS allows).
- **S3** (path-style): the benchmark's object, served with its ``ETag`` and ``If-Match``
  honoured (``412 PreconditionFailed``); ``PUT``, ``GET`` and ``DELETE`` of any other key
  (the rejection report, claim-checked summaries); ``404 NoSuchKey`` for a missing one.

Run (the benchmark starts it): ``python bench/fast_endpoint.py PORT FILE BUCKET KEY``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

Item = dict[str, Any]
Value = dict[str, Any]  # one typed DynamoDB value: {"S": "..."}, {"N": "1.5"}, ...
Key = tuple[tuple[str, str], ...]

_JSON_10 = "application/x-amz-json-1.0"
_ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
_TOKEN = re.compile(r"\s*(<>|<=|>=|[()=<>,]|[#:]?[A-Za-z_][\w.]*)")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class DynamoDBError(Exception):
    """An error answer: HTTP 400 with DynamoDB's ``__type`` and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _validation(message: str) -> DynamoDBError:
    return DynamoDBError("ValidationException", message)


# --- expressions ---------------------------------------------------------------------------


class _Parser:
    """Compile one condition expression into a predicate over an item."""

    def __init__(self, text: str, names: dict[str, str], values: dict[str, Value]) -> None:
        self.tokens = tokenize(text)
        self.at = 0
        self.names = names
        self.values = values

    def peek(self) -> str:
        return self.tokens[self.at] if self.at < len(self.tokens) else ""

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if not token or (expected is not None and token.upper() != expected):
            raise _validation(f"expected {expected or 'a token'} at {token or 'the end'!r}")
        self.at += 1
        return token

    def parse(self) -> Callable[[Item], bool]:
        predicate = self.either()
        if self.peek():
            raise _validation(f"unexpected {self.peek()!r}")
        return predicate

    def either(self) -> Callable[[Item], bool]:
        parts = [self.both()]
        while self.peek().upper() == "OR":
            self.take()
            parts.append(self.both())
        return parts[0] if len(parts) == 1 else lambda item: any(p(item) for p in parts)

    def both(self) -> Callable[[Item], bool]:
        parts = [self.negation()]
        while self.peek().upper() == "AND":
            self.take()
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else lambda item: all(p(item) for p in parts)

    def negation(self) -> Callable[[Item], bool]:
        if self.peek().upper() == "NOT":
            self.take()
            inner = self.negation()
            return lambda item: not inner(item)
        return self.primary()

    def primary(self) -> Callable[[Item], bool]:
        if self.peek() == "(":
            self.take()
            inner = self.either()
            self.take(")")
            return inner
        function = self.peek().lower()
        if function in {"attribute_exists", "attribute_not_exists", "begins_with"}:
            self.take()
            self.take("(")
            name = resolve(self.take(), self.names)
            if function == "begins_with":
                self.take(",")
                prefix = self.operand()
                self.take(")")
                return lambda item: _begins_with(item.get(name), prefix(item))
            self.take(")")
            if function == "attribute_exists":
                return lambda item: name in item
            return lambda item: name not in item
        left = self.operand()
        compare = _COMPARE.get(self.take())
        if compare is None:
            raise _validation(f"unsupported comparison before {self.peek()!r}")
        right = self.operand()
        return lambda item: _compare(compare, left(item), right(item))

    def operand(self) -> Callable[[Item], Value | None]:
        token = self.take()
        if token.startswith(":"):
            if token not in self.values:
                raise _validation(f"no value for {token}")
            value = self.values[token]
            return lambda _item: value
        name = resolve(token, self.names)
        return lambda item: item.get(name)


def tokenize(text: str) -> list[str]:
    """The expression's tokens; ``ValidationException`` on anything outside the subset."""
    tokens, at = [], 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            if text[at:].strip():
                raise _validation(f"cannot parse {text[at:]!r}")
            break
        tokens.append(match.group(1))
        at = match.end()
    return tokens


def resolve(token: str, names: dict[str, str]) -> str:
    """An attribute name, ``#placeholders`` replaced; nested paths are not supported."""
    if token.startswith("#"):
        if token not in names:
            raise _validation(f"no name for {token}")
        return names[token]
    if not re.fullmatch(r"[A-Za-z_]\w*", token):
        raise _validation(f"unsupported attribute path {token!r}")
    return token


def _scalar(value: Value | None) -> tuple[str, Any] | None:
    if value is None or len(value) != 1:
        return None
    kind, raw = next(iter(value.items()))
    return kind, Decimal(raw) if kind == "N" else raw


def _compare(compare: Callable[[Any, Any], bool], left: Value | None, right: Value | None) -> bool:
    a, b = _scalar(left), _scalar(right)
    if a is None or b is None or a[0] != b[0]:
        return False
    return compare(a[1], b[1])


def _begins_with(value: Value | None, prefix: Value | None) -> bool:
    a, b = _scalar(value), _scalar(prefix)
    return a is not None and b is not None and a[0] == b[0] == "S" and a[1].startswith(b[1])


def condition(
    text: str | None, names: dict[str, str], values: dict[str, Value]
) -> Callable[[Item], bool]:
    """The predicate of a condition, key condition or filter expression (``None``: always)."""
    if not text:
        return lambda _item: True
    return _Parser(text, names, values).parse()


def apply_update(item: Item, text: str, names: dict[str, str], values: dict[str, Value]) -> None:
    """Apply ``SET a = :v, ...`` and ``REMOVE a, ...`` clauses to ``item`` in place."""
    tokens, at = tokenize(text), 0
    while at < len(tokens):
        clause = tokens[at].upper()
        at += 1
        if clause not in {"SET", "REMOVE"}:
            raise _validation(f"unsupported update clause {clause!r}")
        while True:
            name = resolve(tokens[at], names)
            if clause == "SET":
                if tokens[at + 1] != "=" or not tokens[at + 2].startswith(":"):
                    raise _validation("SET supports only `name = :value`")
                item[name] = values[tokens[at + 2]]
                at += 3
            else:
                item.pop(name, None)
                at += 1
            if at < len(tokens) and tokens[at] == ",":
                at += 1
                continue
            break


# --- tables --------------------------------------------------------------------------------


@dataclass
class Table:
    """One table: its key attribute names and its items (compact JSON text) by key."""

    hash_key: str
    range_key: str | None
    items: dict[Key, str] = field(default_factory=dict)

    def key_of(self, item: Item) -> Key:
        """The table's key of an item (or of a ``Key``), as (type, value) pairs."""
        names = (self.hash_key,) if self.range_key is None else (self.hash_key, self.range_key)
        try:
            return tuple(next(iter(item[name].items())) for name in names)
        except (KeyError, AttributeError, StopIteration) as exc:
            raise _validation(f"the item or key lacks the table's key {names}") from exc

    def get(self, key: Item) -> Item | None:
        """The item with this key, or ``None``."""
        text = self.items.get(self.key_of(key))
        return None if text is None else json.loads(text)

    def put(self, item: Item) -> None:
        """Store (replace) an item."""
        self.items[self.key_of(item)] = json.dumps(item, separators=(",", ":"))

    def delete(self, key: Item) -> None:
        """Remove the item with this key, if any."""
        self.items.pop(self.key_of(key), None)


class DynamoDB:
    """The tables and the operations on them (request and answer as parsed JSON)."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}

    def table(self, name: str) -> Table:
        """The named table; ``ResourceNotFoundException`` when there is none."""
        if name not in self.tables:
            raise DynamoDBError("ResourceNotFoundException", "Requested resource not found")
        return self.tables[name]

    def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """Run one operation (``X-Amz-Target``'s name) on its parsed request."""
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()
        handler = getattr(self, f"_{snake}", None)
        if handler is None:
            raise DynamoDBError("UnknownOperationException", f"{operation} is not emulated")
        result: dict[str, Any] = handler(request)
        return result

    def _create_table(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["TableName"]
        if name in self.tables:
            raise DynamoDBError("ResourceInUseException", f"Table already exists: {name}")
        roles = {k["KeyType"]: k["AttributeName"] for k in request["KeySchema"]}
        self.tables[name] = Table(roles["HASH"], roles.get("RANGE"))
        return {"TableDescription": {"TableName": name, "TableStatus": "ACTIVE"}}

    def _delete_table(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["TableName"]
        self.table(name)
        del self.tables[name]
        return {"TableDescription": {"TableName": name, "TableStatus": "DELETING"}}

    def _batch_write_item(self, request: dict[str, Any]) -> dict[str, Any]:
        for name, writes in request["RequestItems"].items():
            table = self.table(name)
            if not 0 < len(writes) <= 25:
                raise _validation("a BatchWriteItem holds 1 to 25 requests per table")
            for write in writes:
                if "PutRequest" in write:
                    table.put(write["PutRequest"]["Item"])
                else:
                    table.delete(write["DeleteRequest"]["Key"])
        return {"UnprocessedItems": {}}

    def _checked(self, request: dict[str, Any]) -> tuple[Table, Item | None]:
        """The table and current item of a single-item write, its condition checked."""
        table = self.table(request["TableName"])
        key = request.get("Key") or request["Item"]
        current = table.get(key)
        check = condition(
            request.get("ConditionExpression"),
            request.get("ExpressionAttributeNames", {}),
            request.get("ExpressionAttributeValues", {}),
        )
        if not check(current or {}):
            raise DynamoDBError("ConditionalCheckFailedException", "The conditional request failed")
        return table, current

    def _put_item(self, request: dict[str, Any]) -> dict[str, Any]:
        table, _ = self._checked(request)
        table.put(request["Item"])
        return {}

    def _delete_item(self, request: dict[str, Any]) -> dict[str, Any]:
        table, _ = self._checked(request)
        table.delete(request["Key"])
        return {}

    def _update_item(self, request: dict[str, Any]) -> dict[str, Any]:
        table, current = self._checked(request)
        item = current or dict(request["Key"])
        apply_update(
            item,
            request["UpdateExpression"],
            request.get("ExpressionAttributeNames", {}),
            request.get("ExpressionAttributeValues", {}),
        )
        table.put(item)
        return {}

    def _get_item(self, request: dict[str, Any]) -> dict[str, Any]:
        item = self.table(request["TableName"]).get(request["Key"])
        return {} if item is None else {"Item": item}

    def _query(self, request: dict[str, Any]) -> dict[str, Any]:
        table = self.table(request["TableName"])
        names = request.get("ExpressionAttributeNames", {})
        values = request.get("ExpressionAttributeValues", {})
        keyed = condition(request["KeyConditionExpression"], names, values)
        kept = condition(request.get("FilterExpression"), names, values)
        partition = _partition_value(request["KeyConditionExpression"], table, names, values)
        scanned = sorted((key, text) for key, text in table.items.items() if key[0] == partition)
        matched = [item for item in (json.loads(t) for _, t in scanned) if keyed(item)]
        items = [item for item in matched if kept(item)]
        if "ProjectionExpression" in request:
            wanted = [
                resolve(t, names) for t in tokenize(request["ProjectionExpression"]) if t != ","
            ]
            items = [{k: item[k] for k in wanted if k in item} for item in items]
        return {"Items": items, "Count": len(items), "ScannedCount": len(matched)}

    def _scan(self, request: dict[str, Any]) -> dict[str, Any]:
        table = self.table(request["TableName"])
        if request.get("Select") != "COUNT" or "FilterExpression" in request:
            raise _validation("only Scan with Select=COUNT and no filter is emulated")
        return {"Count": len(table.items), "ScannedCount": len(table.items)}


def _partition_value(
    text: str, table: Table, names: dict[str, str], values: dict[str, Value]
) -> tuple[str, str]:
    """The ``hash = :v`` term every key condition has, as a key part."""
    tokens = tokenize(text)
    for at in range(len(tokens) - 2):
        if resolve_or_none(tokens[at], names) == table.hash_key and tokens[at + 1] == "=":
            value = values[tokens[at + 2]]
            return next(iter(value.items()))
    raise _validation(f"the key condition names no {table.hash_key} = :value")


def resolve_or_none(token: str, names: dict[str, str]) -> str | None:
    """The attribute a token names, or ``None`` for a keyword, value or symbol."""
    if token.startswith("#"):
        return names.get(token)
    return token if re.fullmatch(r"[A-Za-z_]\w*", token) else None


# --- the server ----------------------------------------------------------------------------


def dynamodb_answer(status: int, body: bytes) -> web.Response:
    """A DynamoDB answer with the CRC32 header real DynamoDB sends."""
    return web.Response(
        status=status,
        body=body,
        headers={"x-amz-crc32": str(zlib.crc32(body))},
        content_type=_JSON_10,
    )


def s3_error(status: int, code: str) -> web.Response:
    """An S3 error answer (XML, as S3 sends it)."""
    body = f"<Error><Code>{code}</Code><Message>{code}</Message></Error>"
    return web.Response(status=status, text=body, content_type="application/xml")


class S3Objects:
    """Path-style S3: PUT, GET (``If-Match`` honoured) and DELETE of whole objects."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}

    def put(self, path: str, body: bytes) -> web.Response:
        """Store an object; its ETag is the MD5 of the body, as for a single-part upload."""
        etag = f'"{hashlib.md5(body).hexdigest()}"'  # noqa: S324 - S3's ETag is an MD5
        self.objects[path] = (body, etag)
        return web.Response(headers={"ETag": etag})

    def answer(self, request: web.Request, body: bytes) -> web.Response:
        """Answer one S3 request."""
        path = request.path
        if request.method == "PUT":
            return self.put(path, body)
        if request.method == "DELETE":
            self.objects.pop(path, None)
            return web.Response(status=204)
        if request.method not in {"GET", "HEAD"}:
            return s3_error(405, "MethodNotAllowed")
        if path not in self.objects:
            return s3_error(404, "NoSuchKey")
        content, etag = self.objects[path]
        wanted = request.headers.get("If-Match")
        if wanted is not None and wanted.strip('"') != etag.strip('"'):
            return s3_error(412, "PreconditionFailed")
        return web.Response(body=content, headers={"ETag": etag})


def put_events(body: bytes) -> web.Response:
    """Accept every entry of a ``PutEvents`` call (1 to 10 entries, as AWS allows)."""
    count = len(json.loads(body)["Entries"])
    if not 0 < count <= 10:
        return web.Response(status=400, text='{"__type":"ValidationException"}')
    answer = {"FailedEntryCount": 0, "Entries": [{"EventId": "e"}] * count}
    return web.Response(body=json.dumps(answer).encode(), content_type="application/x-amz-json-1.1")


def make_app(data_path: Path, bucket: str, key: str) -> web.Application:
    """The aiohttp application answering every call, the benchmark's object already stored."""
    dynamodb = DynamoDB()
    s3 = S3Objects()
    s3.put(f"/{bucket}/{key}", data_path.read_bytes())

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        target = request.headers.get("X-Amz-Target", "")
        if target.startswith("DynamoDB_20120810."):
            try:
                answer = dynamodb.call(target.rsplit(".", 1)[1], json.loads(body))
            except DynamoDBError as exc:
                error = {"__type": _ERROR_PREFIX + exc.code, "message": str(exc)}
                return dynamodb_answer(400, json.dumps(error).encode())
            return dynamodb_answer(200, json.dumps(answer).encode())
        if target.endswith("PutEvents"):
            return put_events(body)
        return s3.answer(request, body)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    """Serve until terminated: ``PORT FILE BUCKET KEY``."""
    port, path, bucket, key = sys.argv[1:5]
    app = make_app(Path(path), bucket, key)
    web.run_app(app, host="127.0.0.1", port=int(port), print=None, access_log=None)


if __name__ == "__main__":
    main()
