"""A per-test ingest "stack" on the moto server, built with plain boto3 (sync).

It mirrors the deployed wiring: a bucket that sends S3 events to EventBridge, a rule that
routes its "Object Created" events to a queue (so tests hand the handler the event moto really
emits), the transactions and idempotency tables, and a bus whose ``stori.pipeline`` events a
rule routes to another queue, where tests read them back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import boto3

from stori_pipeline.settings import IngestSettings

REGION = "us-east-1"


@dataclass
class FakeLambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name: str = "process-user-transaction"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:process-user-transaction"
    )
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        """Plenty of time left (Powertools sizes the in-progress lock from it)."""
        return 600_000


def _drain(sqs: Any, url: str, expected: int | None) -> list[dict[str, Any]]:
    """Every message on the queue; moto delivers synchronously, the loop only bounds it."""
    messages: list[dict[str, Any]] = []
    for _ in range(50):
        response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        batch = response.get("Messages", [])
        for message in batch:
            messages.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if not batch and (expected is None or len(messages) >= expected):
            break
    return messages


@dataclass
class IngestStack:
    """Names and clients of one test's resources."""

    endpoint: str
    suffix: str
    bucket: str = ""
    table: str = ""
    objects_table: str = ""
    idempotency_table: str = ""
    bus: str = ""
    clients: dict[str, Any] = field(default_factory=dict)
    s3_events_url: str = ""
    summaries_url: str = ""

    def client(self, service: str) -> Any:
        """A boto3 client on the moto server, one per service."""
        if service not in self.clients:
            self.clients[service] = boto3.client(
                service, region_name=REGION, endpoint_url=self.endpoint
            )
        return self.clients[service]

    def create(self) -> IngestStack:
        """Create every resource; return ``self``."""
        s3, ddb, events = (self.client(n) for n in ("s3", "dynamodb", "events"))
        self.bucket = f"tx-{self.suffix}"
        self.table = f"transactions-{self.suffix}"
        self.objects_table = f"objects-{self.suffix}"
        self.idempotency_table = f"idempotency-{self.suffix}"
        self.bus = f"stori-{self.suffix}"
        s3.create_bucket(Bucket=self.bucket)
        s3.put_bucket_notification_configuration(
            Bucket=self.bucket,
            NotificationConfiguration={"EventBridgeConfiguration": {}},
        )
        self.create_transactions_table(self.table)
        ddb.create_table(
            TableName=self.objects_table,
            KeySchema=[
                {"AttributeName": "ObjectId", "KeyType": "HASH"},
                {"AttributeName": "Entry", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "ObjectId", "AttributeType": "S"},
                {"AttributeName": "Entry", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        self.create_idempotency_table()
        events.create_event_bus(Name=self.bus)
        self.s3_events_url = self._route(
            "default",
            f"s3-{self.suffix}",
            {
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {"bucket": {"name": [self.bucket]}},
            },
        )
        self.summaries_url = self._route(
            self.bus, f"sum-{self.suffix}", {"source": ["stori.pipeline"]}
        )
        return self

    def create_transactions_table(self, name: str) -> None:
        """A table with the Transactions key schema (SPEC §4) named ``name``."""
        self.client("dynamodb").create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": "AccountId", "KeyType": "HASH"},
                {"AttributeName": "TransactionKey", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "AccountId", "AttributeType": "S"},
                {"AttributeName": "TransactionKey", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )

    def create_idempotency_table(self) -> None:
        """The (empty) idempotency table; tests drop it to let a delivery through again."""
        self.client("dynamodb").create_table(
            TableName=self.idempotency_table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

    def _route(self, bus: str, name: str, pattern: dict[str, Any]) -> str:
        sqs, events = self.client("sqs"), self.client("events")
        url: str = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
        return url

    def env(self, num_workers: int = 4) -> dict[str, str]:
        """The handler's environment variables for these resources."""
        return {
            "TRANSACTIONS_TABLE": self.table,
            "OBJECTS_TABLE": self.objects_table,
            "IDEMPOTENCY_TABLE": self.idempotency_table,
            "EVENT_BUS_NAME": self.bus,
            "NUM_WORKERS": str(num_workers),
            "POWERTOOLS_METRICS_NAMESPACE": "StoriPipelineTest",
        }

    def settings(self, num_workers: int = 4) -> IngestSettings:
        """The ingest settings for these resources."""
        return IngestSettings(
            transactions_table=self.table,
            objects_table=self.objects_table,
            event_bus_name=self.bus,
            idempotency_table=self.idempotency_table,
            num_workers=num_workers,
        )

    def upload(self, key: str, body: bytes) -> dict[str, Any]:
        """Put the object; return the one "Object Created" event moto emitted for it."""
        self.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body)
        events = _drain(self.client("sqs"), self.s3_events_url, expected=1)
        assert len(events) == 1, events
        return events[0]

    def s3_events(self) -> list[dict[str, Any]]:
        """The bucket's "Object Created" events emitted so far (and not read before)."""
        return _drain(self.client("sqs"), self.s3_events_url, expected=None)

    def items(self) -> list[dict[str, Any]]:
        """Every item of the transactions table (plain Python values, Decimal numbers)."""
        deserializer = boto3.dynamodb.types.TypeDeserializer()
        ddb = self.client("dynamodb")
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.table}
        while True:
            page = ddb.scan(**kwargs)
            items += [
                {k: deserializer.deserialize(v) for k, v in raw.items()} for raw in page["Items"]
            ]
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def summary_events(self, expected: int | None = None) -> list[dict[str, Any]]:
        """The ``stori.pipeline`` events published so far (and not read before)."""
        return _drain(self.client("sqs"), self.summaries_url, expected)

    def object_text(self, key: str) -> str | None:
        """The object's text, or ``None`` when it does not exist."""
        s3 = self.client("s3")
        try:
            body: bytes = s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        return body.decode()


def dec(text: str) -> Decimal:
    """A Decimal from CSV text with an optional '+' (the test's own, independent parse)."""
    return Decimal(text.strip().lstrip("+"))
