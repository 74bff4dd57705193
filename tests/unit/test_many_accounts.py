"""Many accounts: the lazy summaries view and ``summarize --json`` streamed from the buckets.

The streamed document must be byte for byte what ``json.dumps`` made of the frozen summaries'
``to_json()`` (the form before streaming), and its accounts what the independent oracle says.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import pickle
from pathlib import Path

import pytest

from stori_pipeline import AccountSummary, Flow, Ledger, MonthSummary
from stori_pipeline.cli import main
from stori_pipeline.ingest.events import EventBridgePublisher, summary_entries
from stori_pipeline.records import Rejection
from stori_pipeline.retry import RetryPolicy
from stori_pipeline.stream import ImportResult, file_chunks, summarize_stream
from stori_pipeline.summary import AccountSummaries
from stori_pipeline.synthetic import HeaderStyle, SyntheticSpec, write_synthetic
from stori_pipeline.terminal import json_text
from tests.unit._support import comparable, oracle


def _generate(tmp_path: Path, spec: SyntheticSpec) -> Path:
    path = tmp_path / "tx.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        write_synthetic(spec, out)
    return path


def _dumped_the_old_way(path: Path, account: str | None) -> str:
    """What ``summarize --json`` printed before streaming: json.dumps of frozen summaries."""
    rejected: list[Rejection] = []
    result = asyncio.run(
        summarize_stream(file_chunks(path), account=account, on_reject=rejected.append)
    )
    frozen = ImportResult(
        result.rows_read,
        result.rows_accepted,
        result.rows_rejected,
        tuple(result.accounts),
        result.file_error,
        result.file_error_detail,
        result.file_error_line,
    )
    assert all(type(a) is AccountSummary for a in frozen.accounts)
    return json_text(json.dumps(frozen.to_json(rejected), ensure_ascii=False)) + "\n"


SPECS = [
    pytest.param(
        SyntheticSpec(rows=20_000, accounts=5_000, seed=1, error_rate=0.05),
        None,
        id="5000-accounts",
    ),
    pytest.param(SyntheticSpec(rows=6_000, accounts=3_000, seed=2, year=2024), None, id="years"),
    pytest.param(
        SyntheticSpec(rows=3_000, accounts=1, seed=3, style=HeaderStyle.CHALLENGE, error_rate=0.1),
        "Acc1",
        id="no-year-one-account",
    ),
    # More amounts than Ledger.PENDING_LIMIT: buckets and pending amounts both hold rows.
    pytest.param(
        SyntheticSpec(rows=70_000, accounts=3, seed=4, error_rate=0.01), None, id="folded"
    ),
]


@pytest.mark.parametrize(("spec", "account"), SPECS)
def test_streamed_json_is_byte_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: SyntheticSpec, account: str | None
) -> None:
    """``summarize --json`` prints exactly json.dumps of the frozen summaries' to_json()."""
    path = _generate(tmp_path, spec)
    extra = ["--account", account] if account else []
    assert main(["summarize", str(path), "--json", *extra]) == 0
    out = capsys.readouterr().out
    assert out == _dumped_the_old_way(path, account)
    if spec.rows <= 6_000:  # the oracle is row at a time: the smaller files
        assert comparable(json.loads(out)) == comparable(oracle(path.read_bytes(), account))


def test_streamed_json_escapes_like_json_dumps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rejected ids with quotes, non-ASCII, C1 and bidi characters; chunks of any size."""
    rows = ["Id,Date,Amount,AccountId", "1,7/1,1.00,A", '"q""uote",7/2,x,A', "é\u202e,7/3,y,B"]
    rows += ["\u009b1,7/4,z,B", "2,13/1,1,B", "3,7/5,-0.01,B", "4,7/6,0,C"]
    path = tmp_path / "tx.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert main(["summarize", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert out == _dumped_the_old_way(path, None)
    rejected: list[Rejection] = []
    result = asyncio.run(summarize_stream(file_chunks(path), on_reject=rejected.append))
    whole = json.dumps(result.to_json(rejected), ensure_ascii=False)
    for size in (1, 7, 100):
        assert "".join(result.json_chunks(rejected, chunk_chars=size)) == whole


def test_file_error_json_is_byte_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rejected file: no accounts, the fileError, the same bytes as before."""
    path = tmp_path / "tx.csv"
    path.write_text("Nope,Header\n1,2\n", encoding="utf-8")
    assert main(["summarize", str(path), "--json", "--account", "A"]) == 2
    assert capsys.readouterr().out == _dumped_the_old_way(path, "A")


def _ledger() -> Ledger:
    ledger = Ledger()
    for account, year, month, cents in [
        ("B", None, 7, 6050),
        ("B", None, 7, -1030),
        ("B", None, 8, 0),
        ("A", 2024, 1, -1),
        ("B", 2023, 7, 100),
        ("C", 2024, 12, 5),
    ]:
        ledger.add(account, year, month, cents)
    # Pending amounts on top of the buckets, and an account whose rows were all rejected.
    ledger.append_all([ledger.pending(ledger.account_key("C") | (2024 * 16 + 12))] * 3, [7, -3, 0])
    ledger.pending(ledger.account_key("D") | 7)
    return ledger


def test_view_reads_like_the_tuple_of_frozen_summaries() -> None:
    """len, indexing, slicing, iteration, ==, hash: as the tuple; D has no summary."""
    view = _ledger().summaries()
    assert isinstance(view, AccountSummaries)
    expected = (
        AccountSummary("A", (MonthSummary(2024, 1, 1, Flow(), Flow(1, -1)),)),
        AccountSummary(
            "B",
            (
                MonthSummary(None, 7, 2, Flow(1, 6050), Flow(1, -1030)),
                MonthSummary(None, 8, 1, Flow(), Flow()),
                MonthSummary(2023, 7, 1, Flow(1, 100), Flow()),
            ),
        ),
        AccountSummary("C", (MonthSummary(2024, 12, 4, Flow(2, 12), Flow(1, -3)),)),
    )
    assert view == expected
    assert expected == view
    assert hash(view) == hash(expected)
    assert len(view) == 3
    assert view[1] == expected[1]
    assert view[-1] == expected[-1]
    assert view[1:] == expected[1:]
    assert isinstance(view[1:], tuple)
    assert list(view) == list(expected)
    assert list(view.account_ids()) == ["A", "B", "C"]
    assert pickle.loads(pickle.dumps(view)) == expected
    assert copy.deepcopy(ImportResult(1, 1, 0, view)).accounts == expected
    assert view != expected[:2]
    assert view != list(expected)  # a tuple is never equal to a list either
    texts = [json.dumps(s.to_json(), ensure_ascii=False) for s in expected]
    assert list(view.json_texts()) == texts
    compact = [json.dumps(s.to_json(), separators=(",", ":"), ensure_ascii=False) for s in expected]
    assert list(view.json_texts(compact=True)) == compact


def test_view_is_frozen_before_the_ledger_changes() -> None:
    """Summaries handed out never change: adding to the ledger freezes them first."""
    ledger = _ledger()
    view = ledger.summaries()
    before = tuple(view)
    assert ledger.summaries() is view  # nothing changed: the same view
    ledger.add("A", 2024, 1, -5)
    ledger.append_all([ledger.pending(ledger.account_key("E") | 3)], [100])
    assert view == before
    assert list(view.account_ids()) == ["A", "B", "C"]
    assert [json.loads(t) for t in view.json_texts()] == [s.to_json() for s in before]
    after = ledger.summaries()
    assert after is not view
    assert pickle.loads(pickle.dumps(ledger)).summaries() == after
    assert [s.account_id for s in after] == ["A", "B", "C", "E"]
    assert after[0].debit == Flow(2, -6)


def test_json_texts_are_json_dumps_of_to_json_at_the_edges() -> None:
    """The writer from the buckets at its edges.

    Both separators, averages rounded half-up, zero amounts, a year and no year, 17-digit
    totals, an id that JSON escapes.
    """
    ledger = Ledger()
    for cents in (1, 2, 2, -1, -2, -2, 0, 333_333_333_333_333_33):
        ledger.add("Acc-1", None, 2, cents)
        ledger.add("Acc-1", 2100, 1, -cents)
    for cents in (3, -5, 0):
        ledger.add('Acc-\u00e9"2', 2024, 12, cents)
    expected = list(ledger.summaries())
    for compact, separators in ((False, (", ", ": ")), (True, (",", ":"))):
        texts = list(ledger.summaries().json_texts(compact=compact))
        assert texts == [
            json.dumps(s.to_json(), separators=separators, ensure_ascii=False) for s in expected
        ]


def test_json_chunks_of_a_merged_tuple() -> None:
    """An ImportResult holding a plain tuple (merged slices) streams the same document."""
    accounts = tuple(_ledger().summaries())
    result = ImportResult(9, 8, 1, accounts)
    stream = io.StringIO()
    for chunk in result.json_chunks(chunk_chars=10):
        stream.write(chunk)
    assert stream.getvalue() == json.dumps(result.to_json(), ensure_ascii=False)


class _Store:
    """Records claim-checked summaries (fake)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    async def put(self, key: str, body: bytes) -> dict[str, object]:
        self.objects[key] = body
        return {"bucket": "b", "key": key, "bytes": len(body)}


def test_events_from_the_buckets_are_the_same_bytes() -> None:
    """summary_entries from the lazy view: the entries and claim checks of frozen summaries."""
    ledger = _ledger()
    for year in range(1900, 2101):  # 2,412 months: over 256 KB, so claim-checked
        for month in range(1, 13):
            ledger.add("Big", year, month, year * 100 + month)
            ledger.add("Big", year, month, -month)
    view = ledger.summaries()
    publisher = EventBridgePublisher(object(), "bus", policy=RetryPolicy())
    identity = {
        "import_id": "é" * 32,
        "bucket": "b",
        "key": "k/ñ.csv",
        "etag": "e",
        "rows_rejected": 3,
    }
    runs = []
    for summaries in (view, tuple(view)):
        store = _Store()
        entries = asyncio.run(summary_entries(publisher, store, summaries=summaries, **identity))
        runs.append((entries, store.objects))
    assert runs[0] == runs[1]
    (entries, referenced), objects = runs[0]
    assert referenced == ["Big"]
    assert len(objects) == 1
    assert [json.loads(e["Detail"]).get("summary", {}).get("accountId") for e in entries] == [
        "A",
        "B",
        None,
        "C",
    ]
