"""Ingest one S3 object: stream, validate, write DynamoDB, report rejections, publish summaries.

:mod:`.pipeline` orchestrates against small Protocols; :mod:`.s3`, :mod:`.dynamodb` and
:mod:`.events` are the AWS adapters; :mod:`.keys` holds the pure event and key helpers;
:mod:`.versions` makes a new version of an object replace the old one; :mod:`.claim_check`
stores summaries too large for their event.
"""

from stori_pipeline.ingest.claim_check import S3SummaryStore
from stori_pipeline.ingest.dynamodb import DynamoDBTransactionSink, transaction_item
from stori_pipeline.ingest.events import (
    DETAIL_TYPE,
    EVENT_SOURCE,
    EventBridgePublisher,
    EventTooLargeError,
    reference_detail,
    summary_detail,
    summary_entries,
)
from stori_pipeline.ingest.keys import (
    InvalidEventError,
    ObjectCreated,
    account_from_key,
    import_id,
    key_candidates,
    parse_object_created,
    report_key,
    transaction_key,
    transaction_key_prefix,
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
from stori_pipeline.ingest.versions import (
    LeaseLostError,
    ObjectBusyError,
    ObjectSupersededError,
    ObjectVersion,
    VersionLedger,
)

__all__ = [
    "DETAIL_TYPE",
    "EVENT_SOURCE",
    "DynamoDBTransactionSink",
    "EventBridgePublisher",
    "EventPublisher",
    "EventTooLargeError",
    "IngestResult",
    "InvalidEventError",
    "LeaseLostError",
    "ObjectBusyError",
    "ObjectCreated",
    "ObjectGoneError",
    "ObjectSupersededError",
    "ObjectVersion",
    "RejectionReport",
    "RejectionSink",
    "S3SummaryStore",
    "TransactionSink",
    "VersionLedger",
    "account_from_key",
    "import_id",
    "ingest_object",
    "ingest_stream",
    "key_candidates",
    "open_object",
    "parse_object_created",
    "reference_detail",
    "report_key",
    "summary_detail",
    "summary_entries",
    "transaction_item",
    "transaction_key",
    "transaction_key_prefix",
]
