"""The ingest's idempotency ids computed offline equal the ones Powertools stores."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
)

from handlers import process_user_transaction
from stori_pipeline.idempotency import INGEST_KEY_PREFIX, ingest_record_id
from stori_pipeline.ops.reprocess import ObjectVersion, object_created_event

EVENTS = Path(__file__).resolve().parent.parent / "events"


def powertools_id(event: dict[str, Any]) -> str:
    """The id the ingest handler's idempotency layer derives for ``event``."""
    layer = DynamoDBPersistenceLayer(table_name="unused")
    layer.configure(
        IdempotencyConfig(event_key_jmespath=process_user_transaction.EVENT_KEY_JMESPATH),
        key_prefix=INGEST_KEY_PREFIX,
    )
    key = layer._get_hashed_idempotency_key(event)
    assert key is not None
    return key


@pytest.mark.parametrize("etag_field", ["etag", "eTag"])
def test_ingest_record_id_matches_powertools(etag_field: str) -> None:
    """AWS's ``etag`` and moto's ``eTag`` both hash as bucket, key, ETag under the prefix."""
    event = json.loads((EVENTS / "s3_object_created.json").read_text())
    obj = event["detail"]["object"]
    etag = obj.pop("etag", None) or obj.pop("eTag")
    obj[etag_field] = etag
    expected = ingest_record_id(event["detail"]["bucket"]["name"], obj["key"], etag)
    assert powertools_id(event) == expected


def test_the_synthetic_event_hits_the_record_reprocess_removes() -> None:
    """The event reprocess sends (a key AWS URL-encodes) keys the first id it deletes."""
    obj = ObjectVersion("bkt", "incoming/A 1/ene+feb.csv", "abc123", "v1", 10)
    event = object_created_event(
        obj,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
        event_id="e-1",
        now=datetime(2026, 1, 2, tzinfo=UTC),
    )
    assert event["detail"]["object"]["key"] == "incoming/A+1/ene%2Bfeb.csv"
    assert obj.event_keys == ("incoming/A+1/ene%2Bfeb.csv", "incoming/A 1/ene+feb.csv")
    assert powertools_id(event) == ingest_record_id("bkt", obj.event_keys[0], "abc123")
    assert (event["account"], event["region"]) == ("123456789012", "us-east-1")
    assert event["detail"]["object"]["version-id"] == "v1"
