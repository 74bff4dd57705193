"""stori-pipeline: transactions CSV -> DynamoDB -> per-account summary -> email.

The pure core (parsing, validation, statistics) lives in :mod:`~stori_pipeline.records`,
:mod:`~stori_pipeline.summary` and :mod:`~stori_pipeline.stream`; AWS adapters and the
pipelines that orchestrate them build on it. Everything public is re-exported here.
"""

from stori_pipeline.errors import (
    AwsOperationError,
    ConfigurationError,
    FileRejectedError,
    PermanentError,
    RetriesExhaustedError,
    StoriPipelineError,
)
from stori_pipeline.records import (
    FileErrorCode,
    RejectCode,
    Rejection,
    RowValidator,
    Transaction,
    resolve_header,
)
from stori_pipeline.settings import EmailSettings, IngestSettings
from stori_pipeline.stream import ImportResult, TransactionStream, file_chunks, summarize_stream
from stori_pipeline.summary import AccountSummary, Flow, Ledger, MonthSummary

__all__ = [
    "AccountSummary",
    "AwsOperationError",
    "ConfigurationError",
    "EmailSettings",
    "FileErrorCode",
    "FileRejectedError",
    "Flow",
    "ImportResult",
    "IngestSettings",
    "Ledger",
    "MonthSummary",
    "PermanentError",
    "RejectCode",
    "Rejection",
    "RetriesExhaustedError",
    "RowValidator",
    "StoriPipelineError",
    "Transaction",
    "TransactionStream",
    "file_chunks",
    "resolve_header",
    "summarize_stream",
]
