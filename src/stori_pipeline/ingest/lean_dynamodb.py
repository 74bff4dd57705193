"""DynamoDB JSON calls on a lean request path: pre-serialized bodies, SigV4, one aiohttp session.

Why it exists: against a fast endpoint, ~85% of the ingest's CPU went to aiobotocore/botocore
request handling (parameter serialization, event hooks, response parsing, the generic signer),
not to our work. ``BatchWriteItem`` is one fixed request shape — ``POST /`` with a JSON body —
so this module sends the body the caller already serialized, signs it with a SigV4 signer
specialised for that shape (the signing key cached per day, as the algorithm allows), and
parses only the JSON that comes back. Measured in ``bench/bench_ingest.py --fast``.

Everything else is *taken from the aiobotocore client* the caller built
(:func:`lean_client_for`), so nothing about configuration forks:

- the endpoint (``AWS_ENDPOINT_URL``, region, ``endpoint_url=``) is ``client.meta.endpoint_url``;
- credentials are the client's own provider object — environment variables with a session
  token in Lambda, refreshable ones elsewhere — frozen once per request, so refresh works;
- the HTTP connection pool, and with it TLS verification, the CA bundle, client certificates,
  the pool size and the timeouts, is the client's own aiohttp session, closed with the client.

When the client is not one this path understands (another HTTP backend, a proxy for the
endpoint, unsigned requests, a test double), :func:`lean_client_for` returns ``None`` and the
caller uses the SDK call instead.

Errors keep the SDK's shape: an HTTP error answer raises botocore's ``ClientError`` with the
error code parsed as botocore parses it (``__type`` after ``#``), so callers map errors by code
exactly as before; a failure of the connection itself, a truncated body or a CRC32 mismatch
(DynamoDB's ``x-amz-crc32`` header, which botocore checks too) raises :class:`TransportError`.
Retrying is the caller's business (:mod:`stori_pipeline.ingest.resend`): this module never
retries, so exactly one policy decides how often a request is sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import inspect
import json
import zlib
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import aiohttp
from botocore.exceptions import ClientError

from stori_pipeline.errors import AwsOperationError

__all__ = [
    "JSON_CONTENT_TYPE",
    "LeanDynamoDB",
    "SigV4",
    "TransportError",
    "lean_client_for",
]

JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
_TARGET_PREFIX = "DynamoDB_20120810."
_USER_AGENT = "stori-pipeline lean-dynamodb"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class TransportError(AwsOperationError):
    """The request got no usable answer: connection failure, timeout, truncated or corrupt body.

    Sending it again may succeed (DynamoDB's writes here are idempotent puts), so callers treat
    it as transient; ``code`` is ``None`` because no AWS error code was received.
    """

    def __init__(self, message: str, *, operation: str) -> None:
        super().__init__(message, service="dynamodb", operation=operation, code=None)


class FrozenCredentials(Protocol):
    """botocore's ``ReadOnlyCredentials``: one consistent snapshot of a credential set."""

    @property
    def access_key(self) -> str:
        """The access key id."""
        ...

    @property
    def secret_key(self) -> str:
        """The secret access key."""
        ...

    @property
    def token(self) -> str | None:
        """The session token (Lambda's and every role's credentials have one)."""
        ...


class SigV4:
    """AWS Signature Version 4 for ``POST`` requests with a body and no query string.

    The same algorithm as botocore's ``SigV4Auth`` (a unit test checks both produce identical
    headers), without its generic request model: the canonical request is one f-string and the
    derived signing key — four HMACs that depend only on the secret, day, region and service —
    is computed once per day instead of once per request.
    """

    __slots__ = ("_keys", "_region", "_scope_tail", "_service")

    def __init__(self, region: str, service: str) -> None:
        self._region = region
        self._service = service
        self._scope_tail = f"/{region}/{service}/aws4_request"
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret: str, day: str) -> bytes:
        cached = self._keys.get((secret, day))
        if cached is None:
            key = hmac.digest(f"AWS4{secret}".encode(), day.encode(), "sha256")
            for part in (self._region, self._service, "aws4_request"):
                key = hmac.digest(key, part.encode(), "sha256")
            # Only the current day's key is ever useful again; keep the cache at one entry.
            self._keys = {(secret, day): key}
            cached = key
        return cached

    def headers(  # noqa: PLR0913 - the signed inputs, each a distinct part of the request
        self,
        credentials: FrozenCredentials,
        *,
        host: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        now: dt.datetime | None = None,
    ) -> dict[str, str]:
        """``headers`` plus ``X-Amz-Date``, the session token and ``Authorization``.

        Every header passed in is signed, as are ``host`` and the added ones; ``headers`` keys
        must be distinct case-insensitively and must not include ``Host`` or ``User-Agent``
        (the latter is never signed, so send it separately).
        """
        stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
        signed = {**headers, "X-Amz-Date": stamp}
        if credentials.token:
            signed["X-Amz-Security-Token"] = credentials.token
        lowered = sorted(
            [(name.lower(), " ".join(value.split())) for name, value in signed.items()]
            + [("host", host)]
        )
        names = ";".join(name for name, _ in lowered)
        canonical = "\n".join(
            (
                "POST",
                quote(path, safe="/~"),
                "",
                "".join(f"{name}:{value}\n" for name, value in lowered),
                names,
                hashlib.sha256(body).hexdigest(),
            )
        )
        day = stamp[:8]
        scope = day + self._scope_tail
        to_sign = (
            f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        signature = hmac.new(
            self._signing_key(credentials.secret_key, day), to_sign.encode(), "sha256"
        ).hexdigest()
        signed["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={names}, Signature={signature}"
        )
        return signed


def _host(url: str) -> str:
    """The Host header of ``url`` as botocore signs it (port only when not the default)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def error_of(status: int, headers: Any, body: bytes) -> dict[str, Any]:  # noqa: ANN401
    """The error response botocore's parser makes of a DynamoDB JSON error answer.

    The code is ``__type`` up to a ``:`` and after its last ``#`` (``com.amazonaws.dynamodb.
    v20120810#ProvisionedThroughputExceededException``), else the HTTP status — as botocore's
    JSON protocol parser decides it.
    """
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    code = str(parsed.get("__type") or status).split(":", 1)[0].rsplit("#", 1)[-1]
    message = parsed.get("message") or parsed.get("Message") or ""
    return {
        "Error": {"Code": code, "Message": str(message)},
        "ResponseMetadata": {
            "HTTPStatusCode": status,
            "RequestId": headers.get("x-amzn-requestid", ""),
        },
    }


class LeanDynamoDB:
    """Calls DynamoDB JSON operations with a body the caller serialized.

    Args:
        session: the aiohttp session to send on (owned by the caller).
        endpoint_url: the DynamoDB endpoint, e.g. ``https://dynamodb.us-east-1.amazonaws.com``.
        region: the signing region.
        credentials: a botocore/aiobotocore credentials object; ``get_frozen_credentials()``
            (sync or async) is called once per request, so refreshing providers refresh.
        signing_name: the SigV4 service name.
    """

    __slots__ = ("_credentials", "_host", "_path", "_session", "_signer", "_url")

    def __init__(
        self,
        session: Any,  # noqa: ANN401 - an aiohttp.ClientSession, or its awaitable getter
        *,
        endpoint_url: str,
        region: str,
        credentials: Any,  # noqa: ANN401 - botocore credential objects are untyped
        signing_name: str = "dynamodb",
    ) -> None:
        self._session = session
        self._credentials = credentials
        self._signer = SigV4(region, signing_name)
        parts = urlsplit(endpoint_url)
        self._path = parts.path or "/"
        self._url = endpoint_url if parts.path else endpoint_url.rstrip("/") + "/"
        self._host = _host(endpoint_url)

    async def _frozen(self) -> FrozenCredentials:
        frozen = self._credentials.get_frozen_credentials()
        if inspect.isawaitable(frozen):
            frozen = await frozen
        return frozen  # type: ignore[no-any-return]

    async def _client_session(self) -> aiohttp.ClientSession:
        if callable(self._session):
            # aiobotocore creates its aiohttp session on first use; ask for it once.
            self._session = await self._session()
        session: aiohttp.ClientSession = self._session
        return session

    async def call(self, operation: str, body: bytes) -> dict[str, Any]:
        """Send one ``operation`` (``"BatchWriteItem"``) with a JSON ``body``; its parsed answer.

        Raises:
            botocore.exceptions.ClientError: DynamoDB answered with an error (by error code).
            TransportError: no usable answer (connection, timeout, truncated or corrupt body).
        """
        headers = self._signer.headers(
            await self._frozen(),
            host=self._host,
            path=self._path,
            headers={"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": _TARGET_PREFIX + operation},
            body=body,
        )
        # Host is sent as signed; identity encoding because the CRC32 covers the raw body.
        headers["Host"] = self._host
        headers["Accept-Encoding"] = "identity"
        headers["User-Agent"] = _USER_AGENT
        session = await self._client_session()
        try:
            async with session.post(self._url, data=body, headers=headers) as response:
                status, answer = response.status, await response.read()
                crc = response.headers.get("x-amz-crc32")
                reply_headers = response.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}", operation=operation) from exc
        if crc is not None and crc.isdigit() and zlib.crc32(answer) != int(crc):
            raise TransportError("response CRC32 mismatch", operation=operation)
        if status != 200:
            raise ClientError(error_of(status, reply_headers, answer), operation)
        try:
            parsed = json.loads(answer)
        except ValueError as exc:
            raise TransportError(f"unreadable response: {exc}", operation=operation) from exc
        if not isinstance(parsed, dict):
            raise TransportError("response is not a JSON object", operation=operation)
        return parsed


def lean_client_for(client: Any) -> LeanDynamoDB | None:  # noqa: ANN401 - untyped clients
    """A :class:`LeanDynamoDB` sharing an aiobotocore DynamoDB client's configuration.

    Uses the client's endpoint, region, credentials provider and aiohttp session (see the
    module docstring). Returns ``None`` when the client is not an aiohttp-backed, SigV4-signed
    aiobotocore client reaching its endpoint without a proxy: the SDK call is right there.
    A :class:`LeanDynamoDB` passed in is returned as it is.
    """
    if isinstance(client, LeanDynamoDB):
        return client
    # Imported here: only reached with an aiobotocore client, which has loaded it already.
    from aiobotocore.httpsession import AIOHTTPSession  # noqa: PLC0415

    meta = getattr(client, "meta", None)
    signer = getattr(client, "_request_signer", None)
    endpoint = getattr(client, "_endpoint", None)
    http = getattr(endpoint, "http_session", None)
    if meta is None or signer is None or not isinstance(http, AIOHTTPSession):
        return None
    credentials = getattr(signer, "_credentials", None)
    endpoint_url = getattr(meta, "endpoint_url", None)
    if credentials is None or not endpoint_url or signer.signature_version != "v4":
        return None
    proxies = getattr(http, "_proxy_config", None)
    get_session = getattr(http, "_get_session", None)
    if proxies is None or get_session is None or proxies.proxy_url_for(endpoint_url):
        return None

    async def session() -> aiohttp.ClientSession:
        got: aiohttp.ClientSession = await get_session(None)
        return got

    return LeanDynamoDB(
        session,
        endpoint_url=endpoint_url,
        region=signer.region_name,
        credentials=credentials,
        signing_name=signer.signing_name,
    )
