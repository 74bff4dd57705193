"""The lean DynamoDB request path: its JSON items, its signature, its HTTP behaviour.

botocore is the oracle for what the lean path replaces: its ``SigV4Auth`` for signatures, its
JSON parser's rules for error codes, ``transaction_item`` for the items. HTTP behaviour is
checked against a local aiohttp server that plays DynamoDB's wire protocol.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aioboto3
import aiohttp
import pytest
from aiobotocore.config import AioConfig
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from stori_pipeline.errors import RetriesExhaustedError
from stori_pipeline.ingest.dynamodb import DynamoDBTransactionSink, ItemEncoder, transaction_item
from stori_pipeline.ingest.lean_dynamodb import (
    LeanDynamoDB,
    SigV4,
    TransportError,
    error_of,
    lean_client_for,
)
from stori_pipeline.records import Transaction
from stori_pipeline.retry import RetryPolicy, set_testing

texts = st.text(min_size=1, max_size=20)


@given(
    account=texts,
    tid=texts,
    date=texts,
    year=st.none() | st.integers(1, 9999),
    month=st.integers(1, 12),
    cents=st.integers(-(10**15), 10**15),
    line=st.integers(1, 10**9),
    bucket=texts,
    key=texts,
    etag=texts,
)
def test_the_json_text_of_an_item_is_the_sdk_item(
    account: str,
    tid: str,
    date: str,
    year: int | None,
    month: int,
    cents: int,
    line: int,
    bucket: str,
    key: str,
    etag: str,
) -> None:
    """``ItemEncoder`` writes exactly ``transaction_item``'s item, for any text in any field."""
    tx = Transaction(account, tid, date, year, month, cents, line)
    text = ItemEncoder(bucket=bucket, key=key, etag=etag).put_request(tx)
    expected = transaction_item(tx, bucket=bucket, key=key, etag=etag)
    assert json.loads(text) == {"PutRequest": {"Item": expected}}


@pytest.mark.parametrize("token", [None, "session/token=="])
@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://dynamodb.eu-west-1.amazonaws.com/", "dynamodb.eu-west-1.amazonaws.com"),
        ("http://127.0.0.1:5000/", "127.0.0.1:5000"),
        ("https://localhost:443/", "localhost"),
    ],
)
def test_the_signature_is_botocores(token: str | None, url: str, host: str) -> None:
    """For the same request and instant, the headers equal botocore ``SigV4Auth``'s."""
    credentials = ReadOnlyCredentials(
        "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token
    )
    body = b'{"RequestItems":{"t":[]}}'
    base = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.X"}
    now = dt.datetime(2026, 12, 2, 23, 59, 59, tzinfo=dt.UTC)
    ours = SigV4("eu-west-1", "dynamodb").headers(
        credentials, host=host, path="/", headers=base, body=body, now=now
    )

    request = AWSRequest(method="POST", url=url, data=body, headers=base)
    request.context["timestamp"] = now.strftime("%Y%m%dT%H%M%SZ")
    signer = SigV4Auth(credentials, "dynamodb", "eu-west-1")
    signer._modify_request_before_signing(request)
    signature = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    signer._inject_signature_to_request(request, signature)
    assert ours == dict(request.headers.items())


def test_the_signing_key_follows_the_day_and_the_secret() -> None:
    """A cached signing key is never used for another day or another secret."""
    reused = SigV4("us-east-1", "dynamodb")
    day_one = dt.datetime(2026, 1, 1, 23, 59, tzinfo=dt.UTC)

    def sign(signer: SigV4, secret: str, now: dt.datetime) -> str:
        credentials = ReadOnlyCredentials("AK", secret, None)
        headers = signer.headers(credentials, host="h", path="/", headers={}, body=b"", now=now)
        return headers["Authorization"]

    for secret, now in [("s1", day_one), ("s2", day_one), ("s1", day_one + dt.timedelta(hours=1))]:
        assert sign(reused, secret, now) == sign(SigV4("us-east-1", "dynamodb"), secret, now)


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (
            400,
            b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"}',
            "ProvisionedThroughputExceededException",
        ),
        (400, b'{"__type":"ValidationException","message":"bad"}', "ValidationException"),
        (400, b'{"__type":"com.amazon.coral.service#UnrecognizedClientException:extra"}', None),
        (503, b"", "503"),
        (500, b"<html>oops</html>", "500"),
    ],
)
def test_error_codes_are_parsed_as_botocore_parses_them(
    status: int, body: bytes, code: str | None
) -> None:
    """``__type`` up to ':' and after '#', else the status; the message is kept."""
    parsed = error_of(status, {"x-amzn-requestid": "r1"}, body)
    assert parsed["Error"]["Code"] == (code or "UnrecognizedClientException")
    assert parsed["ResponseMetadata"] == {"HTTPStatusCode": status, "RequestId": "r1"}
    if b"bad" in body:
        assert parsed["Error"]["Message"] == "bad"


# --- HTTP behaviour against a local server ---------------------------------------------------


@dataclass
class Rotating:
    """A credentials provider whose key changes on every request, like a refreshing one."""

    served: int = 0

    async def get_frozen_credentials(self) -> ReadOnlyCredentials:
        """The next credential set."""
        self.served += 1
        return ReadOnlyCredentials(f"AK{self.served}", "secret", f"token{self.served}")


@dataclass
class FakeDynamo:
    """Answers each request with the next canned reply; records what it received."""

    replies: list[Callable[[bytes], web.Response]]
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        """Record, then reply."""
        body = await request.read()
        self.received.append((dict(request.headers), body))
        return self.replies.pop(0)(body)


def ok(answer: dict[str, Any], *, crc: int | None = None) -> Callable[[bytes], web.Response]:
    """A 200 answer with DynamoDB's CRC32 header (``crc`` overrides it)."""
    raw = json.dumps(answer).encode()
    checksum = zlib.crc32(raw) if crc is None else crc
    return lambda _body: web.Response(body=raw, headers={"x-amz-crc32": str(checksum)})


@asynccontextmanager
async def fake_dynamo(fake: FakeDynamo) -> AsyncIterator[str]:
    """Serve ``fake`` on a free local port."""
    app = web.Application()
    app.router.add_post("/", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_each_request_is_signed_with_fresh_credentials_and_keeps_the_body() -> None:
    """Credentials are frozen per request (refresh works); body and target go out as given."""
    fake = FakeDynamo([ok({}), ok({"UnprocessedItems": {}})])
    credentials = Rotating()
    async with fake_dynamo(fake) as url, aiohttp.ClientSession() as session:
        lean = LeanDynamoDB(session, endpoint_url=url, region="r", credentials=credentials)
        assert await lean.call("BatchWriteItem", b'{"a":1}') == {}
        assert await lean.call("BatchWriteItem", b'{"b":2}') == {"UnprocessedItems": {}}
    (first, body1), (second, body2) = fake.received
    assert (body1, body2) == (b'{"a":1}', b'{"b":2}')
    assert first["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AK1/")
    assert second["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AK2/")
    assert (first["X-Amz-Security-Token"], second["X-Amz-Security-Token"]) == ("token1", "token2")
    assert first["X-Amz-Target"] == "DynamoDB_20120810.BatchWriteItem"
    assert first["Accept-Encoding"] == "identity"


async def test_errors_and_broken_answers_keep_the_sdk_shape() -> None:
    """An error answer is a ClientError by code; a bad CRC32 or a dead server, TransportError."""
    throttled = b'{"__type":"x#ThrottlingException","message":"slow down"}'
    fake = FakeDynamo(
        [lambda _b: web.Response(status=400, body=throttled), ok({"x": 1}, crc=1), ok([])]  # type: ignore[list-item]
    )
    async with fake_dynamo(fake) as url, aiohttp.ClientSession() as session:
        lean = LeanDynamoDB(session, endpoint_url=url, region="r", credentials=Rotating())
        with pytest.raises(ClientError) as caught:
            await lean.call("BatchWriteItem", b"{}")
        assert caught.value.response["Error"] == {
            "Code": "ThrottlingException",
            "Message": "slow down",
        }
        with pytest.raises(TransportError, match="CRC32"):
            await lean.call("BatchWriteItem", b"{}")
        with pytest.raises(TransportError, match="not a JSON object"):
            await lean.call("BatchWriteItem", b"{}")
    async with aiohttp.ClientSession() as session:
        gone = LeanDynamoDB(session, endpoint_url=url, region="r", credentials=Rotating())
        with pytest.raises(TransportError) as lost:
            await gone.call("BatchWriteItem", b"{}")
    assert lost.value.code is None
    assert lost.value.operation == "BatchWriteItem"


def batch(*rows: tuple[str, str, int]) -> list[Transaction]:
    """Transactions from (account, id, line)."""
    return [Transaction(a, i, "7/1", None, 7, 100, line) for a, i, line in rows]


async def test_the_sink_resends_only_what_is_left_and_one_key_goes_once() -> None:
    """UnprocessedItems and a 5xx are re-sent; a repeated key is written once, the later row."""
    set_testing(True)
    left: list[Any] = []

    def half_left(body: bytes) -> web.Response:
        requests = json.loads(body)["RequestItems"]["t"]
        left.extend(requests[1:])
        return ok({"UnprocessedItems": {"t": requests[1:]}})(body)

    fake = FakeDynamo(
        [half_left, lambda _b: web.Response(status=503, body=b""), ok({"UnprocessedItems": {}})]
    )
    try:
        async with fake_dynamo(fake) as url, aiohttp.ClientSession() as session:
            lean = LeanDynamoDB(session, endpoint_url=url, region="r", credentials=Rotating())
            sink = DynamoDBTransactionSink(
                lean, "t", bucket="b", key="k", etag="e", policy=RetryPolicy(max_attempts=3)
            )
            assert sink.lean
            written = await sink.write(batch(("A1", "1", 2), ("A2", "1", 3), ("A1", "1", 4)))
    finally:
        set_testing(False)
    assert written == 2
    sent = [json.loads(body)["RequestItems"]["t"] for _, body in fake.received]
    first = [
        (r["PutRequest"]["Item"]["AccountId"]["S"], r["PutRequest"]["Item"]["Line"]["N"])
        for r in sent[0]
    ]
    assert first == [("A1", "4"), ("A2", "3")]
    assert sent[1] == sent[2] == left


async def test_the_sink_gives_up_after_the_policys_attempts() -> None:
    """Connection failures count as attempts; the last problem is reported."""
    set_testing(True)
    try:
        async with aiohttp.ClientSession() as session:
            lean = LeanDynamoDB(
                session, endpoint_url="http://127.0.0.1:9/", region="r", credentials=Rotating()
            )
            sink = DynamoDBTransactionSink(
                lean, "t", bucket="b", key="k", etag="e", policy=RetryPolicy(max_attempts=2)
            )
            with pytest.raises(RetriesExhaustedError) as caught:
                await sink.write(batch(("A1", "1", 2)))
    finally:
        set_testing(False)
    assert caught.value.attempts == 2
    assert "ClientConnectorError" in str(caught.value)


async def test_an_aiobotocore_client_lends_its_endpoint_credentials_and_pool() -> None:
    """``lean_client_for`` takes the client's endpoint and session; a proxy means no lean path."""
    session = aioboto3.Session(region_name="eu-west-1")
    async with session.client("dynamodb", endpoint_url="http://127.0.0.1:9") as client:
        lean = lean_client_for(client)
        assert lean is not None
        assert lean._url == "http://127.0.0.1:9/"
        assert lean._signer._region == "eu-west-1"
        assert lean_client_for(lean) is lean
    proxied = AioConfig(proxies={"http": "http://proxy.invalid:3128"})
    async with session.client("dynamodb", endpoint_url="http://127.0.0.1:9", config=proxied) as c:
        assert lean_client_for(c) is None
    assert lean_client_for(object()) is None
