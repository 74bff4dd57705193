"""Reading dead-letter messages and S3 URLs for `status` and `reprocess` (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stori_pipeline.ingest import import_id
from stori_pipeline.ops._cli import CommandFailedError, literal
from stori_pipeline.ops.reprocess import parse_s3_url
from stori_pipeline.ops.status import dead_letter

S3_EVENT = {
    "source": "aws.s3",
    "detail-type": "Object Created",
    "detail": {
        "bucket": {"name": "bkt"},
        "object": {"key": "incoming/A/ene+2024.csv", "etag": "e1"},
    },
}


def message(body: object, **attributes: str) -> dict[str, Any]:
    """An SQS message as ReceiveMessage returns it."""
    return {
        "MessageId": "m-1",
        "Body": body if isinstance(body, str) else json.dumps(body),
        "Attributes": {"SentTimestamp": "1764676800000"},
        "MessageAttributes": {
            k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
        },
    }


def test_a_lambda_destination_record_names_the_upload_and_the_error() -> None:
    """OnFailure records: the event's object (key decoded as AWS encodes it) and the error."""
    record = {
        "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": S3_EVENT,
        "responsePayload": {"errorMessage": "dynamodb.BatchWriteItem failed"},
    }
    letter = dead_letter("ProcessUserTransactionDLQ", message(record))
    assert letter.what == "s3://bkt/incoming/A/ene 2024.csv"
    assert letter.error == "RetriesExhausted after 3 attempt(s): dynamodb.BatchWriteItem failed"
    assert letter.import_id == import_id("bkt", "incoming/A/ene 2024.csv", "e1")
    assert letter.sent_at == 1764676800


def test_an_event_age_record_has_no_response() -> None:
    """An event too old to run has a condition and no response payload."""
    record = {
        "requestContext": {"condition": "EventAgeExceeded", "approximateInvokeCount": 0},
        "requestPayload": {"detail": {"importId": "i" * 32, "summary": {"accountId": "Bo"}}},
    }
    letter = dead_letter("SendUserEmailDLQ", message(record))
    assert letter.error == "EventAgeExceeded after 0 attempt(s)"
    assert (letter.import_id, letter.account_id) == ("i" * 32, "Bo")


def test_a_rule_dlq_message_is_the_event_with_the_error_in_attributes() -> None:
    """EventBridge puts the event itself in a rule's DLQ, the error in message attributes."""
    letter = dead_letter(
        "ProcessTransactionRuleDLQ",
        message(S3_EVENT, ERROR_CODE="NO_PERMISSIONS", ERROR_MESSAGE="not authorized"),
    )
    assert letter.error == "NO_PERMISSIONS: not authorized"
    assert letter.key == "incoming/A/ene 2024.csv"


def test_a_body_that_is_not_json_is_shown_not_parsed() -> None:
    """Anything else in the queue is described as unreadable, with its first characters."""
    letter = dead_letter("EmailRuleDLQ", message("hello"))
    assert (letter.what, letter.error) == ("unreadable message", "hello")


def test_literal_escapes_terminal_control_characters() -> None:
    """Escape sequences from AWS data are shown, not executed."""
    assert literal("a\x1b[2Jb\nc") == "a\\x1b[2Jb\\nc"
    assert literal("Peña") == "Peña"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://b/incoming/A/x.csv", ("b", "incoming/A/x.csv")),
        ("s3://b/incoming/A/a b.csv", ("b", "incoming/A/a b.csv")),
    ],
)
def test_parse_s3_url(url: str, expected: tuple[str, str]) -> None:
    """s3://BUCKET/KEY splits at the first slash; the key is taken as typed."""
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize("url", ["b/key", "s3://b", "s3://b/", "s3:///key", "https://b/key"])
def test_parse_s3_url_rejects_other_shapes(url: str) -> None:
    """Not s3://BUCKET/KEY: a usage error (exit status 2)."""
    with pytest.raises(CommandFailedError) as caught:
        parse_s3_url(url)
    assert caught.value.status == 2
