"""A real moto server over HTTP for the whole session; every client gets its endpoint_url.

In-process ``mock_aws`` does not work with aiobotocore (its responses are not awaitable), so
these tests talk to ``ThreadedMotoServer`` exactly as the Lambda functions talk to AWS.
Each test gets its own resource names (``unique``) so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import aioboto3
import boto3
import pytest
from moto.server import ThreadedMotoServer

from stori_pipeline.retry import set_testing
from stori_pipeline.settings import EmailSettings
from tests.integration.ingest_stack import IngestStack

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
def no_backoff_sleeps() -> Iterator[None]:
    """Retry backoffs never sleep (``pytestmark = pytest.mark.usefixtures(...)`` in a module)."""
    set_testing(True)
    yield
    set_testing(False)


@pytest.fixture
def ingest_stack(aws_endpoint: str, unique: str, monkeypatch: pytest.MonkeyPatch) -> IngestStack:
    """This test's bucket, tables, bus and capture queues, with the ingest handler's environment."""
    created = IngestStack(aws_endpoint, unique).create()
    for name, value in created.env().items():
        monkeypatch.setenv(name, value)
    return created


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


EmailResources = Callable[..., EmailSettings]


@pytest.fixture
def email_resources(aws_endpoint: str, unique: str) -> EmailResources:
    """Make the email function's resources on moto; return their settings.

    Call it with the Users table's rows (``{account: {attribute: text}}``): it creates that
    table, the idempotency table and the templates bucket, and verifies the sender's address
    (``sender_name=`` makes the sender ``Name <address>``; only the address is verified).
    """

    def create(
        users: dict[str, dict[str, str]], *, sender_name: str | None = None
    ) -> EmailSettings:
        address = f"no-reply-{unique}@stori.example"
        settings = EmailSettings(
            users_table=f"users-{unique}",
            templates_bucket=f"templates-{unique}",
            sender_email=f"{sender_name} <{address}>" if sender_name else address,
            # Not "idempotency-": tests/integration/ingest_stack.py's table has that name.
            idempotency_table=f"email-idem-{unique}",
        )
        dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=aws_endpoint)
        for table, key in (
            (settings.users_table, "AccountId"),
            (settings.idempotency_table, "id"),
        ):
            dynamodb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        for account, attributes in users.items():
            item = {"AccountId": {"S": account}} | {k: {"S": v} for k, v in attributes.items()}
            dynamodb.put_item(TableName=settings.users_table, Item=item)
        boto3.client("s3", region_name=REGION, endpoint_url=aws_endpoint).create_bucket(
            Bucket=settings.templates_bucket
        )
        boto3.client("ses", region_name=REGION, endpoint_url=aws_endpoint).verify_email_identity(
            EmailAddress=address
        )
        return settings

    return create
