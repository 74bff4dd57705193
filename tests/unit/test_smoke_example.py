"""The challenge's worked example, end to end through the offline command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stori_pipeline.cli import main


def test_worked_example_json(example_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SPEC §3: balance 39.74, July 2, August 2, avg debit -15.38, avg credit 35.25."""
    assert main(["summarize", str(example_csv), "--account", "AccountId123", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (account,) = out["accounts"]
    assert account["balance"] == "39.74"
    assert [(m["month"], m["transactionCount"]) for m in account["months"]] == [(7, 2), (8, 2)]
    assert account["debit"]["average"] == "-15.38"
    assert account["credit"]["average"] == "35.25"
    assert out["rejected"] == []
    assert out["fileError"] is None
