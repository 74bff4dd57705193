"""The synthetic file generator (``stori-pipeline generate``) used by tests and benchmarks."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from stori_pipeline.cli import main
from stori_pipeline.synthetic import HeaderStyle, SyntheticSpec, write_synthetic
from tests.unit._support import oracle, summarize_bytes


def generate(spec: SyntheticSpec) -> tuple[str, int]:
    """The generated text and the count write_synthetic returned."""
    buffer = io.StringIO()
    written = write_synthetic(spec, buffer)
    return buffer.getvalue(), written


def test_deterministic_per_seed() -> None:
    """The same spec gives the same bytes; another seed gives different ones."""
    spec = SyntheticSpec(rows=500, accounts=3, seed=42, error_rate=0.1)
    first, _ = generate(spec)
    again, _ = generate(spec)
    other, _ = generate(SyntheticSpec(rows=500, accounts=3, seed=43, error_rate=0.1))
    assert first == again
    assert first != other


@pytest.mark.parametrize("rows", [1, 7, 9_999, 10_000, 10_001, 25_000])
@pytest.mark.parametrize("style", list(HeaderStyle))
def test_requested_row_count(rows: int, style: HeaderStyle) -> None:
    """Exactly `rows` data records are written and reported (across write batches)."""
    text, written = generate(SyntheticSpec(rows=rows, style=style, seed=rows))
    assert written == rows
    records = list(csv.reader(io.StringIO(text, newline="")))
    assert len(records) == rows + 1
    out = summarize_bytes(text.encode(), account="AccountId123")
    assert out["rowsRead"] == rows
    assert out["rowsAccepted"] == rows


@pytest.mark.parametrize(
    ("style", "header"),
    [
        (HeaderStyle.GO, ["TransactionId", "Date", "Amount", "AccountId"]),
        (HeaderStyle.CHALLENGE, ["Id", "Date", "Transaction"]),
    ],
)
def test_header_styles(style: HeaderStyle, header: list[str]) -> None:
    """Both header styles: the Go system's and the challenge's."""
    text, _ = generate(SyntheticSpec(rows=50, style=style))
    records = list(csv.reader(io.StringIO(text, newline="")))
    assert records[0] == header
    assert all(len(r) == len(header) for r in records)


def test_go_style_positives_have_no_plus_and_challenge_style_signs() -> None:
    """Go style writes positives without '+'; the challenge style signs every amount."""
    go, _ = generate(SyntheticSpec(rows=300, style=HeaderStyle.GO))
    challenge, _ = generate(SyntheticSpec(rows=300, style=HeaderStyle.CHALLENGE))
    go_amounts = [r[2] for r in list(csv.reader(io.StringIO(go)))[1:]]
    challenge_amounts = [r[2] for r in list(csv.reader(io.StringIO(challenge)))[1:]]
    assert not any(a.startswith("+") for a in go_amounts)
    assert any(not a.startswith("-") for a in go_amounts)
    assert all(a[0] in "+-" for a in challenge_amounts)


def test_accounts_spread() -> None:
    """K accounts are all used in a large enough file."""
    text, _ = generate(SyntheticSpec(rows=2000, accounts=5, seed=1))
    out = summarize_bytes(text.encode())
    assert len(out["accounts"]) == 5


def test_year_option_dates_carry_the_year() -> None:
    """With a year, every date is M/D/YYYY in that year and months carry it."""
    text, _ = generate(SyntheticSpec(rows=500, seed=3, year=2023))
    out = summarize_bytes(text.encode())
    years = {m["year"] for a in out["accounts"] for m in a["months"]}
    assert years == {2023}


def test_zero_error_rate_produces_no_rejections() -> None:
    """error_rate 0: every row is valid (per the implementation and the oracle)."""
    for style in HeaderStyle:
        text, _ = generate(SyntheticSpec(rows=3000, accounts=1, seed=11, style=style))
        out = summarize_bytes(text.encode(), account="AccountId123")
        assert out["rejected"] == []
        assert oracle(text.encode(), "AccountId123")["rejected"] == []


@pytest.mark.parametrize(
    ("style", "codes"),
    [
        (
            HeaderStyle.GO,
            {
                "field_count",
                "invalid_id",
                "invalid_date",
                "invalid_amount",
                "invalid_account",
                "duplicate_id",
            },
        ),
        (
            HeaderStyle.CHALLENGE,
            {"field_count", "invalid_id", "invalid_date", "invalid_amount", "duplicate_id"},
        ),
    ],
)
def test_error_rate_produces_several_codes(style: HeaderStyle, codes: set[str]) -> None:
    """A positive error rate yields rejections of every kind the style can have."""
    spec = SyntheticSpec(rows=3000, accounts=1, seed=5, style=style, error_rate=0.2)
    text, _ = generate(spec)
    out = summarize_bytes(text.encode(), account="AccountId123")
    assert {r["code"] for r in out["rejected"]} == codes
    assert 0.1 * spec.rows < out["rowsRejected"] < 0.3 * spec.rows


def test_generate_command_writes_the_same_file(tmp_path: Path) -> None:
    """`generate -o FILE` writes exactly what write_synthetic writes for the same options."""
    path = tmp_path / "out.csv"
    argv = ["generate", "--rows", "1234", "--accounts", "3", "--seed", "9", "-o", str(path)]
    assert main([*argv, "--error-rate", "0.1"]) == 0
    expected, _ = generate(SyntheticSpec(rows=1234, accounts=3, seed=9, error_rate=0.1))
    assert path.read_text(encoding="utf-8") == expected


def test_generate_challenge_style_needs_one_account(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The challenge style has no account column: more than one account is an error."""
    path = tmp_path / "out.csv"
    status = main(
        ["generate", "--rows", "5", "--accounts", "2", "--style", "challenge", "-o", str(path)]
    )
    assert status != 0
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
