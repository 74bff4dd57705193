"""An HTTP proxy in front of the moto server that injects DynamoDB faults on the wire.

The ingest writes DynamoDB items either through the SDK client or on the lean request path
(``stori_pipeline.ingest.lean_dynamodb``), which skips botocore's event hooks; faults injected
here, at the HTTP seam both paths share, hold for both. A dropped item is really not forwarded,
so moto holds exactly what the pipeline managed to deliver, and every forwarded request's SigV4
signature is checked with botocore's own signer.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import aiohttp
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

JSON = "application/x-amz-json-1.0"
BATCH_WRITE = "DynamoDB_20120810.BatchWriteItem"
THROTTLED = "ProvisionedThroughputExceededException"


def error_body(code: str, message: str = "injected") -> bytes:
    """A DynamoDB JSON error answer, as the service spells ``__type``."""
    error = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}
    return json.dumps(error).encode()


@dataclass
class Fault:
    """What to do with one BatchWriteItem call (``None`` fields: nothing)."""

    status: int | None = None  # answer with this status and ``code`` without forwarding
    code: str = ""
    drop_half: bool = False  # forward half the items, report the rest as UnprocessedItems
    corrupt_crc: bool = False  # forward, then answer with a wrong x-amz-crc32
    disconnect: bool = False  # close the connection without an answer


@dataclass
class DynamoWire:
    """Counts and decides faults for every BatchWriteItem passing through the proxy."""

    table: str
    decide: Callable[[int], Fault]
    credentials: ReadOnlyCredentials | None = None
    calls: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    written: Counter[tuple[str, str]] = field(default_factory=Counter)
    user_agents: Counter[str] = field(default_factory=Counter)
    tokens: Counter[str | None] = field(default_factory=Counter)
    bad_signatures: int = 0


def signature_ok(request: web.Request, body: bytes, credentials: ReadOnlyCredentials) -> bool:
    """Whether the request's SigV4 signature is the one botocore computes for it."""
    auth = request.headers.get("Authorization", "")
    try:
        fields = dict(part.strip().split("=", 1) for part in auth.split(" ", 1)[1].split(","))
    except (IndexError, ValueError):
        return False
    _, day, region, service, _ = fields["Credential"].split("/")
    signed = fields["SignedHeaders"].split(";")
    headers = {name: request.headers[name] for name in signed if name != "host"}
    aws = AWSRequest(method="POST", url=str(request.url), data=body, headers=headers)
    aws.headers["host"] = request.headers["Host"]
    aws.context["timestamp"] = request.headers["X-Amz-Date"]
    signer = SigV4Auth(credentials, service, region)
    canonical = signer.canonical_request(aws)
    expected = signer.signature(signer.string_to_sign(aws, canonical), aws)
    return bool(day == aws.context["timestamp"][:8] and fields["Signature"] == expected)


_DROPPED_HEADERS = {"content-length", "transfer-encoding", "x-amz-crc32", "date", "server"}


class _Proxy:
    """Forwards everything to ``upstream``; BatchWriteItem calls meet ``wire``'s faults."""

    def __init__(self, upstream: str, wire: DynamoWire, session: aiohttp.ClientSession) -> None:
        self.upstream = upstream
        self.wire = wire
        self.session = session

    async def forward(self, request: web.Request, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in {"host", "content-length"}
        }
        async with self.session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as answer:
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _DROPPED_HEADERS}
            return answer.status, kept, await answer.read()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.headers.get("X-Amz-Target") != BATCH_WRITE or self.wire.table not in json.loads(
            body
        ).get("RequestItems", {}):
            # Other operations, and the version ledger's own writes (objects table), pass.
            status, headers, answer = await self.forward(request, body)
            return web.Response(status=status, headers=headers, body=answer)
        wire = self.wire
        wire.calls += 1
        wire.user_agents[request.headers.get("User-Agent", "").split("/", 1)[0]] += 1
        wire.tokens[request.headers.get("X-Amz-Security-Token")] += 1
        if wire.credentials is not None and not signature_ok(request, body, wire.credentials):
            wire.bad_signatures += 1
        fault = wire.decide(wire.calls)
        if fault.disconnect:
            wire.faults["disconnect"] += 1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)  # never reaches the client
        if fault.status is not None:
            wire.faults[fault.code] += 1
            return web.Response(status=fault.status, body=error_body(fault.code), content_type=JSON)
        return await self.batch_write(request, body, fault)

    async def batch_write(self, request: web.Request, body: bytes, fault: Fault) -> web.Response:
        wire = self.wire
        parsed = json.loads(body)
        requests = parsed["RequestItems"][wire.table]
        dropped: list[Any] = []
        if fault.drop_half and len(requests) > 1:
            half = len(requests) // 2
            requests, dropped = requests[:half], requests[half:]
            parsed["RequestItems"][wire.table] = requests
            wire.faults["unprocessed"] += len(dropped)
        status, headers, answer = await self.forward(request, json.dumps(parsed).encode())
        if status == HTTPStatus.OK:
            for put in requests:
                item = put["PutRequest"]["Item"]
                wire.written[item["AccountId"]["S"], item["TransactionKey"]["S"]] += 1
        if dropped:
            reply = json.loads(answer)
            reply.setdefault("UnprocessedItems", {}).setdefault(wire.table, []).extend(dropped)
            answer = json.dumps(reply).encode()
        crc = zlib.crc32(answer)
        if fault.corrupt_crc:
            wire.faults["crc"] += 1
            crc ^= 1
        return web.Response(
            status=status, headers={**headers, "x-amz-crc32": str(crc)}, body=answer
        )


@asynccontextmanager
async def fault_proxy(upstream: str, wire: DynamoWire) -> AsyncIterator[str]:
    """Run the proxy on a free local port for the block; yield its URL."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", _Proxy(upstream, wire, session).handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()
