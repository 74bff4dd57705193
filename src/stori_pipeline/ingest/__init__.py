"""Ingest one S3 object: stream, validate, write DynamoDB, report rejections, publish summaries.

:mod:`.pipeline` orchestrates against small Protocols; :mod:`.s3`, :mod:`.dynamodb` and
:mod:`.events` are the AWS adapters; :mod:`.keys` holds the pure event and key helpers.
"""

from stori_pipeline.ingest.dynamodb import DynamoDBTransactionSink, transaction_item
from stori_pipeline.ingest.events import (
    DETAIL_TYPE,
    EVENT_SOURCE,
    EventBridgePublisher,
    EventTooLargeError,
    summary_detail,
)
from stori_pipeline.ingest.keys import (
    InvalidEventError,
    ObjectCreated,
    account_from_key,
    import_id,
    key_candidates,
    parse_object_created,
    report_key,
)
from stori_pipeline.ingest.pipeline import (
    EventPublisher,
    IngestResult,
    RejectionSink,
    TransactionSink,
    ingest_object,
    ingest_stream,
)
from stori_pipeline.ingest.s3 import ObjectGoneError, RejectionReport, open_object

__all__ = [
    "DETAIL_TYPE",
    "EVENT_SOURCE",
    "DynamoDBTransactionSink",
    "EventBridgePublisher",
    "EventPublisher",
    "EventTooLargeError",
    "IngestResult",
    "InvalidEventError",
    "ObjectCreated",
    "ObjectGoneError",
    "RejectionReport",
    "RejectionSink",
    "TransactionSink",
    "account_from_key",
    "import_id",
    "ingest_object",
    "ingest_stream",
    "key_candidates",
    "open_object",
    "parse_object_created",
    "report_key",
    "summary_detail",
    "transaction_item",
]
