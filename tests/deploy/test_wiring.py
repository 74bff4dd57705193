"""The template's wiring works against real (emulated) AWS behaviour, through a moto server.

Rules are created in moto's EventBridge from the template's own EventPattern (only the bucket
reference is resolved, to this test's bucket), with SQS queues standing in for the functions.
A real S3 upload travels S3 -> EventBridge -> rule -> queue; a `stori.pipeline` PutEvents
travels to the email rule's queue. Tables are created from the template's own properties.
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from stori_pipeline.cfn import resolve
from tests.deploy.conftest import REPO

REGION = "us-east-1"
POLL_SECONDS = 10.0


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint)


def _rule_pattern(template: dict[str, Any], rule: str, bucket: str) -> dict[str, Any]:
    pattern = template["Resources"][rule]["Properties"]["EventPattern"]
    resolved: dict[str, Any] = resolve(pattern, {"TransactionsBucket": bucket})
    return resolved


def _rule_to_queue(endpoint: str, name: str, pattern: dict[str, Any]) -> str:
    """A rule on the default bus with the given pattern, targeting a new queue; its URL."""
    sqs, events = _client("sqs", endpoint), _client("events", endpoint)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name=name, EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": arn}])
    return url


def _drain(endpoint: str, url: str, expected: int) -> list[dict[str, Any]]:
    """Messages on the queue: poll (bounded) until `expected` arrived, then once more briefly."""
    sqs = _client("sqs", endpoint)
    bodies: list[dict[str, Any]] = []
    deadline = time.monotonic() + POLL_SECONDS
    while time.monotonic() < deadline:
        wait = 1 if len(bodies) >= expected else 2
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait)
        messages = batch.get("Messages", [])
        bodies += [json.loads(m["Body"]) for m in messages]
        if not messages and len(bodies) >= expected:
            break
    return bodies


def test_upload_rule_matches_incoming_uploads_only(
    template: dict[str, Any], aws_endpoint: str, unique: str
) -> None:
    """An upload under incoming/ reaches the ingest rule; reports/ and other buckets do not."""
    s3 = _client("s3", aws_endpoint)
    bucket, other = f"tx-{unique}", f"other-{unique}"
    for name in (bucket, other):
        s3.create_bucket(Bucket=name)
        s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
    pattern = _rule_pattern(template, "ProcessTransactionRule", bucket)
    url = _rule_to_queue(aws_endpoint, f"process-{unique}", pattern)

    s3.put_object(Bucket=bucket, Key="incoming/AccountId123/a.csv", Body=b"Id,Date,Transaction\n")
    s3.put_object(Bucket=bucket, Key="reports/incoming/AccountId123/a.csv.rejected.csv", Body=b"x")
    s3.put_object(Bucket=bucket, Key="incoming-not/a.csv", Body=b"x")
    s3.put_object(Bucket=other, Key="incoming/AccountId123/a.csv", Body=b"x")

    events = _drain(aws_endpoint, url, expected=1)
    assert [(e["detail"]["bucket"]["name"], e["detail"]["object"]["key"]) for e in events] == [
        (bucket, "incoming/AccountId123/a.csv")
    ]
    assert events[0]["source"] == "aws.s3"
    assert events[0]["detail-type"] == "Object Created"


def test_email_rule_matches_summary_events_only(
    template: dict[str, Any], aws_endpoint: str, unique: str
) -> None:
    """A "Transactions Summarized" event from stori.pipeline reaches the email rule; others not."""
    pattern = _rule_pattern(template, "EmailRule", "unused")
    url = _rule_to_queue(aws_endpoint, f"email-{unique}", pattern)
    sample = json.loads((REPO / "events" / "send-user-email.json").read_text(encoding="utf-8"))
    detail = json.dumps({**sample["detail"], "importId": unique.ljust(32, "0")})
    entries = [
        {"Source": "stori.pipeline", "DetailType": "Transactions Summarized", "Detail": detail},
        {"Source": "stori.pipeline", "DetailType": "Something Else", "Detail": detail},
        {"Source": "other.app", "DetailType": "Transactions Summarized", "Detail": detail},
    ]
    response = _client("events", aws_endpoint).put_events(Entries=entries)
    assert response["FailedEntryCount"] == 0

    events = _drain(aws_endpoint, url, expected=1)
    assert [e["detail"]["importId"] for e in events] == [unique.ljust(32, "0")]
    assert events[0]["detail"]["summary"]["balance"] == "39.74"


@pytest.mark.parametrize(
    ("sample", "rule"),
    [
        ("process-user-transaction.json", "ProcessTransactionRule"),
        ("send-user-email.json", "EmailRule"),
    ],
)
def test_sample_events_match_their_rules(template: dict[str, Any], sample: str, rule: str) -> None:
    """events/*.json (for `sam local invoke`) match the rule that feeds that function."""
    # moto's server does not implement TestEventPattern; its rule matcher is the same code
    # that routed the real events above.
    from moto.events.models import EventPattern, EventPatternParser  # noqa: PLC0415

    event = json.loads((REPO / "events" / sample).read_text(encoding="utf-8"))
    bucket = event["detail"].get("bucket", {}).get("name", "unused")
    raw = json.dumps(_rule_pattern(template, rule, bucket))
    assert EventPattern(raw, EventPatternParser(raw).parse()).matches_event(event)
    other = {**event, "source": "other.app"}
    assert not EventPattern(raw, EventPatternParser(raw).parse()).matches_event(other)


@pytest.mark.parametrize(
    "table", ["TransactionsTable", "ObjectsTable", "UsersTable", "IdempotencyTable"]
)
def test_tables_create_from_the_template_properties(
    template: dict[str, Any], aws_endpoint: str, unique: str, table: str
) -> None:
    """DynamoDB accepts each table's keys and billing mode exactly as the template states them."""
    properties = template["Resources"][table]["Properties"]
    dynamodb = _client("dynamodb", aws_endpoint)
    name = f"{table}-{unique}"
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=properties["AttributeDefinitions"],
        KeySchema=properties["KeySchema"],
        BillingMode=properties["BillingMode"],
    )
    described = dynamodb.describe_table(TableName=name)["Table"]
    assert described["KeySchema"] == properties["KeySchema"]


def test_transactions_table_takes_a_spec_shaped_item(
    template: dict[str, Any], aws_endpoint: str, unique: str
) -> None:
    """An item with SPEC §4's keys and attributes is written and read back by its key."""
    properties = template["Resources"]["TransactionsTable"]["Properties"]
    dynamodb = _client("dynamodb", aws_endpoint)
    name = f"tx-{unique}"
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=properties["AttributeDefinitions"],
        KeySchema=properties["KeySchema"],
        BillingMode="PAY_PER_REQUEST",
    )
    key = {
        "AccountId": {"S": "AccountId123"},
        "TransactionKey": {"S": "incoming/AccountId123/a.csv#0"},
    }
    item = {**key, "TransactionId": {"S": "0"}, "Date": {"S": "7/15"}, "Amount": {"N": "60.5"}}
    dynamodb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": item}}]})
    assert dynamodb.get_item(TableName=name, Key=key)["Item"] == item
