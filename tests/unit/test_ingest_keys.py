"""Parsing the S3 "Object Created" event, key decoding, account and importId (pure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stori_pipeline.errors import PermanentError
from stori_pipeline.ingest.keys import (
    InvalidEventError,
    account_from_key,
    import_id,
    key_candidates,
    normalize_sequencer,
    parse_object_created,
    report_key,
    transaction_key,
    transaction_key_prefix,
)

SAMPLE = Path(__file__).resolve().parent.parent / "events" / "s3_object_created.json"


def event(obj: dict[str, object], bucket: str = "b") -> dict[str, object]:
    """An EventBridge S3 event with the given ``detail.object``."""
    return {"detail-type": "Object Created", "detail": {"bucket": {"name": bucket}, "object": obj}}


def test_sample_event_parses_with_aws_etag_spelling() -> None:
    """The sample event (AWS's `etag`) gives bucket, raw key and ETag."""
    parsed = parse_object_created(json.loads(SAMPLE.read_text()))
    assert parsed.bucket == "stori-transactions"
    assert parsed.raw_key == "incoming/AccountId123/challenge+example.csv"
    assert parsed.etag == "b1946ac92492d2347c6235b4d2611184"
    assert parsed.keys == (
        "incoming/AccountId123/challenge example.csv",
        "incoming/AccountId123/challenge+example.csv",
    )


def test_moto_etag_spelling_and_version_id_are_accepted() -> None:
    """The `eTag` of moto works, quotes are stripped, and `version-id` is kept."""
    parsed = parse_object_created(event({"key": "k", "eTag": '"abc"', "version-id": "v1"}))
    assert (parsed.etag, parsed.version_id) == ("abc", "v1")


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"detail": "x"},
        {"detail": {"bucket": {"name": "b"}}},
        event({"key": "k"}),
        event({"etag": "e"}),
        event({"key": "", "etag": "e"}),
        event({"key": "k", "etag": "e"}, bucket=""),
    ],
)
def test_events_missing_a_field_are_permanent_errors(bad: dict[str, object]) -> None:
    """A malformed event raises InvalidEventError, a PermanentError (never retried)."""
    with pytest.raises(InvalidEventError) as caught:
        parse_object_created(bad)
    assert isinstance(caught.value, PermanentError)


@pytest.mark.parametrize(
    ("raw", "candidates"),
    [
        ("incoming/A1/plain.csv", ("incoming/A1/plain.csv",)),
        ("a+b%2Bc.csv", ("a b+c.csv", "a+b%2Bc.csv")),
        ("a b+c.csv", ("a b c.csv", "a b+c.csv")),
        ("caf%C3%A9.csv", ("café.csv", "caf%C3%A9.csv")),
    ],
)
def test_key_candidates_try_aws_decoding_first_then_the_raw_key(
    raw: str, candidates: tuple[str, ...]
) -> None:
    """AWS's form-encoded key decodes first; the raw key (moto's form) is the fallback."""
    assert key_candidates(raw) == candidates


@pytest.mark.parametrize(
    ("key", "account"),
    [
        ("incoming/AccountId123/jan.csv", "AccountId123"),
        ("incoming/bad acct!/jan.csv", "bad acct!"),
        ("incoming/jan.csv", None),
        ("incoming/A1/sub/jan.csv", None),
        ("incoming//jan.csv", None),
        ("uploads/A1/jan.csv", None),
    ],
)
def test_account_comes_from_incoming_account_file_keys_only(key: str, account: str | None) -> None:
    """Only `incoming/<AccountId>/<file>` names an account (validated later, by the core)."""
    assert account_from_key(key) == account


def test_import_id_is_32_hex_and_deterministic() -> None:
    """Same (bucket, key, ETag) -> same id; any part changed -> another id; quotes ignored."""
    first = import_id("b", "incoming/A1/x.csv", "abc")
    assert len(first) == 32
    assert int(first, 16) >= 0
    assert import_id("b", "incoming/A1/x.csv", '"abc"') == first
    others = {
        import_id("b2", "incoming/A1/x.csv", "abc"),
        import_id("b", "incoming/A1/y.csv", "abc"),
        import_id("b", "incoming/A1/x.csv", "abd"),
    }
    assert first not in others
    assert len(others) == 3


def test_report_key_sits_under_reports_outside_incoming() -> None:
    """SPEC §4: reports/<object key>.rejected.csv, which the incoming/ rule never matches."""
    assert report_key("incoming/A1/x.csv") == "reports/incoming/A1/x.csv.rejected.csv"


# --- sequencers and transaction keys -----------------------------------------------------------


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("0055AED6DCD90281E5", "0055AED6DCD90281E6"),
        ("FF", "100"),  # shorter but not smaller as text: AWS pads on the left
        ("9", "0A"),
        ("00aa", "00AB"),  # case does not matter
    ],
)
def test_normalized_sequencers_order_as_aws_documents(earlier: str, later: str) -> None:
    """Left-padded to one width, string order is the hex order of S3's sequencers."""
    a, b = normalize_sequencer(earlier), normalize_sequencer(later)
    assert a is not None
    assert b is not None
    assert a < b
    assert int(a, 16) == int(earlier, 16)


@pytest.mark.parametrize("bad", [None, "", "  ", "xyz", "0x10", "1" * 65])
def test_a_missing_or_unreadable_sequencer_is_none(bad: str | None) -> None:
    """Nothing that cannot be ordered is pretended to be a sequencer."""
    assert normalize_sequencer(bad) is None


def test_the_event_sequencer_is_parsed_normalized() -> None:
    """``detail.object.sequencer`` reaches ObjectCreated in its comparable form."""
    parsed = parse_object_created(event({"key": "k", "etag": "e", "sequencer": "0a"}))
    assert parsed.sequencer == "0A".rjust(64, "0")


def test_short_keys_keep_the_spec_transaction_key() -> None:
    """``<object key>#<Id>``, SPEC §4's form, for every key with room for any Id."""
    assert transaction_key("incoming/A1/a.csv", "7") == "incoming/A1/a.csv#7"
    key = "k" * 767
    assert transaction_key(key, "x") == f"{key}#x"


LONGEST_ID = "\U0001f600" * 64


@pytest.mark.parametrize("size", [768, 800, 1023, 1024])
def test_long_keys_get_a_hashed_prefix_within_the_sort_key_limit(size: int) -> None:
    """Keys too long for ``<key>#<Id>`` stay under 1,024 bytes with the longest Id."""
    key = ("é" * size)[: size // 2] + "x" * (size % 2)
    assert len(key.encode()) == size
    tx_key = transaction_key(key, LONGEST_ID)
    assert len(tx_key.encode()) <= 1024
    assert tx_key.startswith(transaction_key_prefix(key))
    assert tx_key.endswith(LONGEST_ID)


def test_hashed_prefixes_are_unique_and_deterministic() -> None:
    """Two keys alike in their first 700 bytes differ in their prefix; the same key never does."""
    a, b = "a" * 900 + "1", "a" * 900 + "2"
    assert transaction_key_prefix(a) != transaction_key_prefix(b)
    assert transaction_key_prefix(a) == transaction_key_prefix("a" * 900 + "1")
    assert "#sha256:" in transaction_key_prefix(a)
