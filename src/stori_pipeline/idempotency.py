"""The idempotency records both functions keep, described once for the handlers and operators.

Powertools for AWS Lambda stores one item per idempotent call in the idempotency table:
``id`` is ``<prefix>#<md5 of the JSON of the key's JMESPath result>``, ``status`` is
``INPROGRESS`` or ``COMPLETED``, ``data`` is the call's return value as JSON and
``expiration`` an epoch-seconds TTL. The ingest handler guards on the fields of one S3 object
version (:data:`INGEST_EVENT_KEY_JMESPATH`) under the fixed prefix :data:`INGEST_KEY_PREFIX`,
so an operator who knows bucket, key and ETag can compute the record's id
(:func:`ingest_record_id`) and delete it to run that object again on purpose
(``stori-pipeline reprocess``). A test pins :func:`ingest_record_id` to Powertools' own hashing.

Pure: no boto, no Powertools import.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

__all__ = [
    "EMAIL_TTL_SECONDS",
    "INGEST_EVENT_KEY_JMESPATH",
    "INGEST_KEY_PREFIX",
    "INGEST_TTL_SECONDS",
    "ingest_record_id",
    "record_id",
]

INGEST_KEY_PREFIX = "process-user-transaction"
# The stable fields of one object version; moto spells the ETag "eTag", AWS "etag".
INGEST_EVENT_KEY_JMESPATH = (
    '[detail.bucket.name, detail.object.key, detail.object.etag || detail.object."eTag"]'
)
# S3 and EventBridge redeliver within minutes; a day covers that with a wide margin and lets
# an operator deliberately re-run an object the next day.
INGEST_TTL_SECONDS = 24 * 60 * 60
# The email handler keeps Powertools' default expiry (IdempotencyConfig.expires_after_seconds).
EMAIL_TTL_SECONDS = 60 * 60


def record_id(prefix: str, key_values: Sequence[object]) -> str:
    """The ``id`` Powertools gives a call whose key JMESPath yielded ``key_values``."""
    # Powertools hashes json.dumps(data, sort_keys=True) with its default separators.
    digest = hashlib.md5(  # noqa: S324 - Powertools' key hash, not a security measure
        json.dumps(list(key_values), sort_keys=True).encode()
    ).hexdigest()
    return f"{prefix}#{digest}"


def ingest_record_id(bucket: str, event_key: str, etag: str) -> str:
    """The ingest record's id for an event naming ``event_key`` (exactly as the event spells it).

    ``etag`` is the event's ETag, without quotes (S3 events carry it unquoted).
    """
    return record_id(INGEST_KEY_PREFIX, (bucket, event_key, etag))
