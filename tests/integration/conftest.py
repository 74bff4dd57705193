"""A real moto server over HTTP for the whole session; every client gets its endpoint_url.

In-process ``mock_aws`` does not work with aiobotocore (its responses are not awaitable), so
these tests talk to ``ThreadedMotoServer`` exactly as the Lambda functions talk to AWS.
Each test gets its own resource names (``unique``) so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import aioboto3
import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """Start one moto server on a free port for the session; yield its URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_endpoint(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point every botocore client (boto3, aioboto3, Powertools) at moto for this test."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint


@pytest.fixture
def unique() -> str:
    """A short unique suffix for this test's buckets, tables, queues and rules."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def aio_session() -> aioboto3.Session:
    """An aioboto3 session with the fake credentials of the isolated environment."""
    return aioboto3.Session(region_name=REGION)


@pytest.fixture
async def s3(aio_session: aioboto3.Session, aws_endpoint: str) -> AsyncIterator[object]:
    """An S3 client on the moto server."""
    async with aio_session.client("s3", endpoint_url=aws_endpoint) as client:
        yield client


@pytest.fixture
async def dynamodb(aio_session: aioboto3.Session, aws_endpoint: str) -> AsyncIterator[object]:
    """A DynamoDB client on the moto server."""
    async with aio_session.client("dynamodb", endpoint_url=aws_endpoint) as client:
        yield client
