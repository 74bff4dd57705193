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
    parse_object_created,
    report_key,
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
