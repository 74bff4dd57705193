"""End to end through the Lambda handler (SPEC §4, §5, §7).

Upload -> moto's own S3 event -> handler -> the table, the events (routed by a rule to SQS and
read back) and the rejected-rows report.
"""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import pytest

from handlers.process_user_transaction import handler
from stori_pipeline.errors import ConfigurationError
from tests.integration.ingest_stack import FakeLambdaContext, IngestStack, dec

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"


pytestmark = pytest.mark.usefixtures("no_backoff_sleeps")  # retry backoffs never sleep


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    """Call the handler as Lambda would."""
    return handler(event, FakeLambdaContext())  # type: ignore[arg-type]


def by_key(items: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Items by their primary key."""
    return {(item["AccountId"], item["TransactionKey"]): item for item in items}


MULTI = (
    "TransactionId,Date,Amount,AccountId\n"
    "1,7/15,+60.5,Alice\n"
    "2,7/28,-10.3,Alice\n"
    "1,8/2/2024,-20.46,Bob\n"
    "3,2024-08-13,10,Alice\n"
    "4,8/14,0,Bob\n"
)


def test_multi_account_file_writes_every_row_and_one_event_per_account(
    ingest_stack: IngestStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each accepted row becomes one SPEC §4 item; each account gets one SPEC §5 event."""
    key = "incoming/mixed/2024-08.csv"
    event = ingest_stack.upload(key, MULTI.encode())
    etag = event["detail"]["object"]["eTag"]

    response = invoke(event)

    assert response["rowsAccepted"] == 5
    common = {"SourceBucket": ingest_stack.bucket, "SourceKey": key, "SourceETag": etag}
    expected = [
        ("Alice", "1", "7/15", None, 7, "60.50", "credit", 2),
        ("Alice", "2", "7/28", None, 7, "-10.30", "debit", 3),
        ("Bob", "1", "8/2/2024", 2024, 8, "-20.46", "debit", 4),
        ("Alice", "3", "2024-08-13", 2024, 8, "10.00", "credit", 5),
        ("Bob", "4", "8/14", None, 8, "0.00", "zero", 6),
    ]
    want = {}
    for account, tx_id, date, year, month, amount, kind, line in expected:
        item = {
            "AccountId": account,
            "TransactionKey": f"{key}#{tx_id}",
            "TransactionId": tx_id,
            "Date": date,
            "Month": Decimal(month),
            "Amount": Decimal(amount),
            "Kind": kind,
            "Line": Decimal(line),
            **common,
        }
        if year is not None:
            item["Year"] = Decimal(year)
        want[account, f"{key}#{tx_id}"] = item
    assert by_key(ingest_stack.items()) == want

    events = ingest_stack.summary_events(expected=2)
    assert len(events) == 2
    assert {e["detail-type"] for e in events} == {"Transactions Summarized"}
    assert {e["source"] for e in events} == {"stori.pipeline"}
    details = {e["detail"]["summary"]["accountId"]: e["detail"] for e in events}
    assert set(details) == {"Alice", "Bob"}
    import_ids = {d["importId"] for d in details.values()}
    assert len(import_ids) == 1
    assert re.fullmatch("[0-9a-f]{32}", import_ids.pop())
    for detail in details.values():
        assert detail["schemaVersion"] == 1
        assert detail["source"] == {"bucket": ingest_stack.bucket, "key": key, "etag": etag}
        assert detail["rowsRejected"] == 0
    assert details["Alice"]["summary"]["balance"] == "60.20"
    assert details["Alice"]["summary"]["transactionCount"] == 3
    assert details["Bob"]["summary"]["balance"] == "-20.46"
    assert details["Bob"]["summary"]["credit"] == {"count": 0, "total": "0.00", "average": None}
    assert ingest_stack.object_text(f"reports/{key}.rejected.csv") is None

    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    # EMF allows a value or a list of values per metric; normalise to a list.
    metrics = {
        k: v if isinstance(v, list) else [v]
        for doc in emf
        for k, v in doc.items()
        if k[:1].isupper()
    }
    assert metrics["RowsRead"] == [5]
    assert metrics["RowsRejected"] == [0]
    assert metrics["ItemsWritten"] == [5]


def test_seed_file_lands_row_for_row(ingest_stack: IngestStack, seed_csv: Path) -> None:
    """The Go system's 3,000-row file: every row is an item with its own date and amount."""
    key = "incoming/AccountId123/seed_transactions3000.csv"
    event = ingest_stack.upload(key, seed_csv.read_bytes())

    response = invoke(event)

    with seed_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert response["rowsRead"] == response["rowsAccepted"] == len(rows) == 3000
    items = by_key(ingest_stack.items())
    assert len(items) == 3000
    for line, row in enumerate(rows, start=2):
        item = items[row["AccountId"], f"{key}#{row['TransactionId']}"]
        assert item["Amount"] == dec(row["Amount"])
        assert item["Date"] == row["Date"]
        assert item["Line"] == line
    events = ingest_stack.summary_events(expected=1)
    assert [e["detail"]["summary"]["accountId"] for e in events] == ["AccountId123"]
    assert events[0]["detail"]["summary"]["transactionCount"] == 3000
    total = sum(dec(row["Amount"]) for row in rows)
    assert Decimal(events[0]["detail"]["summary"]["balance"]) == total


EVERY_CODE = (
    b"Id,Date,Amount,AccountId\n"
    b"1,7/15,10.00,A1\n"
    b"2,7/15\n"
    b"3\xff,7/15,1.00,A1\n"
    b",7/15,1.00,A1\n"
    b"5,2/30,1.00,A1\n"
    b"6,7/15,1e3,A1\n"
    b"7,7/15,1.00,bad acct\n"
    b"1,7/16,2.00,A1\n"
    b'"8\nx",7/15,1.00,A1\n'
)


def test_every_rejection_code_is_reported_and_only_good_rows_are_written(
    ingest_stack: IngestStack,
) -> None:
    """Each SPEC §2 row code lands in the CSV report with its line; the one good row is stored."""
    key = "incoming/A1/bad-rows.csv"
    response = invoke(ingest_stack.upload(key, EVERY_CODE))

    report_key = f"reports/{key}.rejected.csv"
    assert response["reportKey"] == report_key
    assert ingest_stack.object_text(report_key) == (
        "line,id,code,detail\n"
        "3,2,field_count,\n"
        "4,3\ufffd,invalid_encoding,\n"
        "5,,invalid_id,\n"
        "6,5,invalid_date,\n"
        "7,6,invalid_amount,\n"
        "8,7,invalid_account,\n"
        "9,1,duplicate_id,\n"
        '11,"8\nx",invalid_id,\n'
    )
    assert [(i["AccountId"], i["TransactionId"]) for i in ingest_stack.items()] == [("A1", "1")]
    events = ingest_stack.summary_events(expected=1)
    assert len(events) == 1
    assert events[0]["detail"]["rowsRejected"] == 8


def test_header_only_file_writes_nothing_and_reports_nothing(ingest_stack: IngestStack) -> None:
    """A header-only file is not an error: no items, no events, no report."""
    key = "incoming/A1/empty.csv"
    response = invoke(ingest_stack.upload(key, b"Id,Date,Transaction\n"))

    assert response["status"] == "processed"
    assert response["rowsRead"] == 0
    assert response["fileError"] is None
    assert ingest_stack.items() == []
    assert ingest_stack.summary_events() == []
    assert ingest_stack.object_text(f"reports/{key}.rejected.csv") is None


@pytest.mark.parametrize(
    ("key", "body", "code", "line", "names"),
    [
        ("incoming/A1/header.csv", b"Foo,Date,Transaction\n1,7/15,+1\n", "bad_header", 1, ["id"]),
        (
            "incoming/A1/twice.csv",
            b"\nId,Date,TransactionId,Transaction\n1,7/15,1,+1\n",
            "bad_header",
            2,
            ["Id", "TransactionId", "id"],
        ),
        ("uploads/no-account.csv", b"Id,Date,Transaction\n1,7/15,+1\n", "no_account", 1, []),
        ("incoming/A1/blank.csv", b"\n\n", "empty_file", 0, []),
    ],
)
def test_file_level_rejection_writes_report_only_and_does_not_raise(
    ingest_stack: IngestStack, key: str, body: bytes, code: str, line: int, names: list[str]
) -> None:
    """A rejected file: a report saying where and what, no items, no events, a normal return."""
    response = invoke(ingest_stack.upload(key, body))

    assert response["fileError"] == code
    report = list(
        csv.reader(io.StringIO(ingest_stack.object_text(f"reports/{key}.rejected.csv") or ""))
    )
    assert report[0] == ["line", "id", "code", "detail"]
    ((at, row_id, row_code, detail),) = report[1:]
    assert (int(at), row_id, row_code) == (line, "", code)
    assert detail
    for name in names:
        assert repr(name) in detail
    assert ingest_stack.items() == []
    assert ingest_stack.summary_events() == []


def test_a_csv_that_breaks_is_reported_at_the_line_where_it_broke(
    ingest_stack: IngestStack,
) -> None:
    """An unterminated quote on line 4: the report says malformed_csv at line 4, and why."""
    key = "incoming/A1/cut.csv"
    body = b'Id,Date,Transaction\n1,7/15,+1\n2,7/16,+2\n3,"' + b"x" * 140_000 + b"\n"
    response = invoke(ingest_stack.upload(key, body))

    assert response["fileError"] == "malformed_csv"
    report = list(
        csv.reader(io.StringIO(ingest_stack.object_text(f"reports/{key}.rejected.csv") or ""))
    )
    ((at, _, row_code, detail),) = report[1:]
    assert (at, row_code) == ("4", "malformed_csv")
    assert "field larger than field limit" in detail


def test_duplicate_object_created_publishes_no_second_set_of_events(
    ingest_stack: IngestStack,
) -> None:
    """A redelivered event returns the stored response and publishes nothing more."""
    event = ingest_stack.upload("incoming/mixed/twice.csv", MULTI.encode())

    first = invoke(event)
    assert len(ingest_stack.summary_events(expected=2)) == 2
    second = invoke(json.loads(json.dumps(event)))

    assert second == first
    assert ingest_stack.summary_events() == []
    assert len(ingest_stack.items()) == 5


@pytest.mark.parametrize("form", ["moto-raw", "aws-encoded"])
def test_key_with_spaces_and_plus_is_read(ingest_stack: IngestStack, form: str) -> None:
    """A key with spaces and '+' works as moto sends it (raw) and as AWS does (URL-encoded)."""
    key = "incoming/AccountId123/my file+v2 (1).csv"
    event = ingest_stack.upload(key, b"Id,Date,Transaction\n0,7/15,+60.5\n1,7/28,-10.3\n")
    if form == "aws-encoded":
        event["detail"]["object"]["key"] = quote_plus(key, safe="/")
        assert event["detail"]["object"]["key"] == "incoming/AccountId123/my+file%2Bv2+%281%29.csv"

    response = invoke(event)

    assert response["key"] == key
    assert {(i["TransactionKey"], i["SourceKey"]) for i in ingest_stack.items()} == {
        (f"{key}#0", key),
        (f"{key}#1", key),
    }
    events = ingest_stack.summary_events(expected=1)
    assert events[0]["detail"]["source"]["key"] == key


def test_sample_event_file_is_a_valid_object_created_event(ingest_stack: IngestStack) -> None:
    """tests/events/s3_object_created.json drives the handler once its names point here."""
    sample = json.loads((EVENTS_DIR / "s3_object_created.json").read_text())
    key = unquote_plus(sample["detail"]["object"]["key"])  # AWS sends the key URL-encoded
    assert key == "incoming/AccountId123/challenge example.csv"
    etag = ingest_stack.client("s3").put_object(
        Bucket=ingest_stack.bucket, Key=key, Body=b"Id,Date,Transaction\n0,7/15,+60.5\n"
    )["ETag"]
    sample["detail"]["bucket"]["name"] = ingest_stack.bucket
    sample["detail"]["object"]["etag"] = etag.strip('"')

    response = invoke(sample)

    assert response["key"] == key
    assert response["rowsAccepted"] == 1
    assert len(ingest_stack.summary_events(expected=1)) == 1


def test_missing_settings_fail_loudly_listing_every_problem(
    ingest_stack: IngestStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without TRANSACTIONS_TABLE and IDEMPOTENCY_TABLE the handler raises, naming both."""
    event = ingest_stack.upload("incoming/A1/x.csv", b"Id,Date,Transaction\n0,7/15,+1\n")
    monkeypatch.delenv("TRANSACTIONS_TABLE")
    monkeypatch.delenv("IDEMPOTENCY_TABLE")

    with pytest.raises(ConfigurationError) as caught:
        invoke(event)

    assert len(caught.value.problems) == 2
    assert ingest_stack.summary_events() == []


def test_object_replaced_after_the_event_is_skipped_without_raising(
    ingest_stack: IngestStack,
) -> None:
    """An event for an overwritten version reads nothing (If-Match) and is not retried."""
    key = "incoming/A1/replaced.csv"
    event = ingest_stack.upload(key, b"Id,Date,Transaction\n0,7/15,+1\n")
    ingest_stack.upload(key, b"Id,Date,Transaction\n0,7/15,+2\n")

    response = invoke(event)

    assert response["status"] == "skipped"
    assert ingest_stack.items() == []
    assert ingest_stack.summary_events() == []


def test_versioned_bucket_reads_the_version_the_event_names(ingest_stack: IngestStack) -> None:
    """With versioning, an event for an overwritten object still ingests its own version."""
    ingest_stack.client("s3").put_bucket_versioning(
        Bucket=ingest_stack.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    key = "incoming/A1/versioned.csv"
    first = ingest_stack.upload(key, b"Id,Date,Transaction\n0,7/15,+1\n")
    ingest_stack.upload(key, b"Id,Date,Transaction\n0,7/15,+2\n")
    assert first["detail"]["object"]["version-id"]

    response = invoke(first)

    assert response["status"] == "processed"
    assert [i["Amount"] for i in ingest_stack.items()] == [Decimal("1.00")]
