"""stori-pipeline: transactions CSV -> DynamoDB -> per-account summary -> email.

The pure core (parsing, validation, statistics) lives in :mod:`~stori_pipeline.records`,
:mod:`~stori_pipeline.summary` and :mod:`~stori_pipeline.stream`; AWS adapters and the
pipelines that orchestrate them build on it. Everything public is re-exported here.

Names are imported on first access (PEP 562): ``import stori_pipeline.errors`` in a Lambda
handler must not load the CSV stream and asyncio at cold start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

_EXPORTS = {
    "AccountSummary": "stori_pipeline.summary",
    "AwsOperationError": "stori_pipeline.errors",
    "ConfigurationError": "stori_pipeline.errors",
    "EmailSettings": "stori_pipeline.settings",
    "FileErrorCode": "stori_pipeline.records",
    "FileRejectedError": "stori_pipeline.errors",
    "Flow": "stori_pipeline.summary",
    "ImportResult": "stori_pipeline.stream",
    "IngestSettings": "stori_pipeline.settings",
    "Ledger": "stori_pipeline.summary",
    "MonthSummary": "stori_pipeline.summary",
    "PermanentError": "stori_pipeline.errors",
    "RejectCode": "stori_pipeline.records",
    "Rejection": "stori_pipeline.records",
    "RetriesExhaustedError": "stori_pipeline.errors",
    "RowValidator": "stori_pipeline.records",
    "StoriPipelineError": "stori_pipeline.errors",
    "Transaction": "stori_pipeline.records",
    "TransactionStream": "stori_pipeline.stream",
    "file_chunks": "stori_pipeline.stream",
    "resolve_header": "stori_pipeline.records",
    "summarize_stream": "stori_pipeline.stream",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


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
