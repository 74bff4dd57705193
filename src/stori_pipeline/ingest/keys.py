"""Pure helpers over the S3 "Object Created" EventBridge event and object keys.

Key encoding: AWS delivers ``detail.object.key`` form-URL-encoded, as in S3 notifications
(``"a b+c.csv"`` arrives as ``"a+b%2Bc.csv"``), while moto puts the raw key in the event. A
single string cannot tell the two apart (``"a+b.csv"`` is ``"a b.csv"`` on AWS and itself on
moto), so :func:`key_candidates` returns the decoded key first and the raw key second, and the
S3 reader opens the first one that exists. The only case this resolves wrongly is a bucket that
holds both ``"a b.csv"`` and ``"a+b.csv"`` while running on an emulator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

from stori_pipeline.errors import PermanentError
from stori_pipeline.records import MAX_ID_LENGTH

__all__ = [
    "INCOMING_PREFIX",
    "MAX_SORT_KEY_BYTES",
    "SUMMARIES_PREFIX",
    "InvalidEventError",
    "ObjectCreated",
    "account_from_key",
    "import_id",
    "key_candidates",
    "normalize_sequencer",
    "parse_object_created",
    "report_key",
    "summary_key",
    "transaction_key",
    "transaction_key_prefix",
]

INCOMING_PREFIX = "incoming/"
REPORTS_PREFIX = "reports/"
# Claim-checked summaries (events/claim_check): a prefix the processing rule never matches.
SUMMARIES_PREFIX = "summaries/"

# DynamoDB's limit on a sort key value, in UTF-8 bytes.
MAX_SORT_KEY_BYTES = 1024
# An Id is at most 64 characters (SPEC §2), each at most 4 UTF-8 bytes.
_MAX_ID_BYTES = MAX_ID_LENGTH * 4
# An object key whose "<key>#" prefix leaves room for any Id keeps SPEC §4's readable form.
_MAX_PLAIN_PREFIX_BYTES = MAX_SORT_KEY_BYTES - _MAX_ID_BYTES
# A hashed prefix keeps this much of the key, so it still reads as the key it stands for.
_HASHED_HEAD_BYTES = _MAX_PLAIN_PREFIX_BYTES - len("#sha256:") - 64 - 1
# S3 sequencers are hex strings of varying length; AWS: left-pad the shorter with zeros and
# compare as strings. A fixed width lets DynamoDB compare stored values with "<=" directly.
_SEQUENCER_WIDTH = 64
_HEX = frozenset("0123456789ABCDEF")


class InvalidEventError(PermanentError):
    """The event is not an S3 "Object Created" event this function can process."""


@dataclass(frozen=True, slots=True)
class ObjectCreated:
    """The fields of an S3 "Object Created" event the pipeline needs (``size`` in bytes).

    ``raw_key`` is the key exactly as the event carried it (possibly URL-encoded); see
    :func:`key_candidates`. ``etag`` has no surrounding quotes.
    """

    bucket: str
    raw_key: str
    etag: str
    version_id: str | None = None
    size: int | None = None
    sequencer: str | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        """The object keys this event may mean, most likely first."""
        return key_candidates(self.raw_key)


def key_candidates(raw_key: str) -> tuple[str, ...]:
    """The decoded key (AWS's encoding) and, when different, the raw key (moto's form)."""
    decoded = unquote_plus(raw_key)
    return (decoded,) if decoded == raw_key else (decoded, raw_key)


def _text(mapping: Mapping[str, object], name: str) -> str | None:
    value = mapping.get(name)
    return value if isinstance(value, str) and value else None


def parse_object_created(event: Mapping[str, object]) -> ObjectCreated:
    """Read bucket, key, ETag and version of an EventBridge S3 "Object Created" event.

    Accepts AWS's ``etag`` and moto's ``eTag``.

    Raises:
        InvalidEventError: a required field is missing or not a string.
    """
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise InvalidEventError("the event has no 'detail' object")
    bucket_obj, object_obj = detail.get("bucket"), detail.get("object")
    if not isinstance(bucket_obj, Mapping) or not isinstance(object_obj, Mapping):
        raise InvalidEventError("the event detail has no 'bucket' or 'object'")
    bucket = _text(bucket_obj, "name")
    key = _text(object_obj, "key")
    etag = _text(object_obj, "etag") or _text(object_obj, "eTag")
    if bucket is None or key is None or etag is None:
        raise InvalidEventError("the event lacks detail.bucket.name, object.key or object.etag")
    size = object_obj.get("size")
    return ObjectCreated(
        bucket,
        key,
        etag.strip('"'),
        _text(object_obj, "version-id"),
        size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        normalize_sequencer(_text(object_obj, "sequencer")),
    )


def normalize_sequencer(sequencer: str | None) -> str | None:
    """The S3 event ``sequencer`` in a form that orders correctly as a plain string.

    AWS documents sequencers as hex strings of varying length to compare after left-padding
    the shorter with zeros; padding every value to one width (and one letter case) makes
    ordinary string comparison — in Python and in a DynamoDB condition — that comparison.
    Anything that is not hex, or too long to pad, is treated as absent (``None``).
    """
    if sequencer is None:
        return None
    text = sequencer.strip().upper()
    if not text or len(text) > _SEQUENCER_WIDTH or not _HEX.issuperset(text):
        return None
    return text.rjust(_SEQUENCER_WIDTH, "0")


def account_from_key(key: str) -> str | None:
    """The ``<AccountId>`` of ``incoming/<AccountId>/<file>``; ``None`` for other key shapes."""
    if not key.startswith(INCOMING_PREFIX):
        return None
    parts = key[len(INCOMING_PREFIX) :].split("/")
    if len(parts) != 2 or not parts[1]:
        return None
    # An invalid segment is still returned: the validator rejects it with ``no_account`` and
    # a message naming it, which is clearer than pretending the key named no account.
    return parts[0] or None


def import_id(bucket: str, key: str, etag: str) -> str:
    """32 hex characters, the same for the same object version (SPEC §5 ``importId``)."""
    # NUL cannot occur in a bucket name or an ETag, so the joined text is unambiguous.
    digest = hashlib.sha256(f"{bucket}\0{key}\0{etag.strip(chr(34))}".encode())
    return digest.hexdigest()[:32]


def report_key(key: str) -> str:
    """Where the rejected-rows report of ``key`` goes (SPEC §4)."""
    return f"{REPORTS_PREFIX}{key}.rejected.csv"


def summary_key(import_ident: str, account_id: str) -> str:
    """Where the claim-checked summary of one account of one import goes (SPEC §5)."""
    return f"{SUMMARIES_PREFIX}{import_ident}/{account_id}.json"


def _utf8_head(text: str, limit: int) -> str:
    """The longest prefix of ``text`` of at most ``limit`` UTF-8 bytes (whole characters)."""
    return text.encode()[:limit].decode(errors="ignore")


def transaction_key_prefix(key: str) -> str:
    """The part of every ``TransactionKey`` of object ``key`` before the Id.

    SPEC §4's ``<object key>#`` when the key leaves room for any Id within DynamoDB's
    1,024-byte sort-key limit (keys up to 767 bytes, nearly all); otherwise the key's first
    bytes, ``#sha256:`` and the SHA-256 of the whole key, then ``#`` — deterministic, unique
    per key, at most 768 bytes. The form depends on the key alone, so every item of one
    object shares one prefix and ``begins_with`` finds them all.
    """
    plain = f"{key}#"
    if len(plain.encode()) <= _MAX_PLAIN_PREFIX_BYTES:
        return plain
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{_utf8_head(key, _HASHED_HEAD_BYTES)}#sha256:{digest}#"


def transaction_key(key: str, transaction_id: str) -> str:
    """The ``TransactionKey`` of one row: :func:`transaction_key_prefix` + the Id (≤ 1,024 B)."""
    return f"{transaction_key_prefix(key)}{transaction_id}"
