"""File data never drives the terminal: markup and escape sequences are shown, not obeyed.

Each command is run as a user runs it, with rich forced to colour (``FORCE_COLOR``) so that
any markup or escape sequence that got through would show up as ANSI codes in the output.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from stori_pipeline.cli import main
from stori_pipeline.local import commands
from stori_pipeline.summary import AccountSummary
from stori_pipeline.terminal import json_text, literal, visible

MARKUP = "[link=http://evil.example]x[/link]"
ESCAPES = "\x1b[31mred\x1b]8;;http://evil.example\x1b\\y\x1b]8;;\x1b\\\r\x9b2J\u202etxt"
OSC8 = "\x1b]8;"


@pytest.fixture(autouse=True)
def _colour(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich writes ANSI colour even into a captured stream, as into a terminal; wide tables."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.delenv("NO_COLOR", raising=False)


def summarize(tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str) -> tuple[int, str]:
    """``summarize FILE --account A1`` (table output); exit status and stdout + stderr."""
    path = tmp_path / "m.csv"
    path.write_text(body, encoding="utf-8")
    status = main(["summarize", str(path), "--account", "A1"])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_an_unbalanced_closing_tag_in_an_id_is_printed_not_parsed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's file: rich raised MarkupError on `[/bold]`; now the id is shown as is."""
    status, out = summarize(tmp_path, capsys, "Id,Date,Transaction\n[/bold],bad,1\n")

    assert status == 0
    assert "[/bold]" in out
    assert "invalid_date" in out


def test_a_link_in_an_id_makes_no_hyperlink_and_no_colour_of_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`[link=…]x[/link]` is text: no OSC 8 hyperlink is emitted, the tag reads literally."""
    status, out = summarize(tmp_path, capsys, f"Id,Date,Transaction\n{MARKUP},bad,1\n")

    assert status == 0
    assert OSC8 not in out
    assert MARKUP in out


def test_raw_escape_sequences_in_an_id_are_shown_as_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ESC, CR, C1 CSI and a bidi override in an id reach the terminal as visible text."""
    body = f'Id,Date,Transaction\n"{ESCAPES}",7/15,1\n'
    status, out = summarize(tmp_path, capsys, body)

    assert status == 0
    assert OSC8 not in out
    assert "\x9b" not in out
    assert "\u202e" not in out
    assert "\r" not in out
    assert "\\x1b[31mred" in out
    assert "\\u202etxt" in out


def test_a_rejected_file_whose_name_holds_escapes_is_reported_safely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one-line message names the file and the line without obeying its name."""
    path = tmp_path / "h\x1b[2J\x9b.csv"
    path.write_text("Foo,Date,Transaction\n1,7/15,1\n", encoding="utf-8")

    status = main(["summarize", str(path), "--account", "A1"])
    err = capsys.readouterr().err

    assert status == 2
    assert "bad_header at line 1" in err
    assert "h\\x1b[2J\\x9b.csv" in err
    assert "\x1b" not in err
    assert "\x9b" not in err


def test_json_output_escapes_what_json_leaves_raw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """C1 controls, DEL and bidi overrides are escaped; the JSON still parses to the id."""
    hostile = "a\x9b2J\x7f\u202eb"
    path = tmp_path / "j.csv"
    path.write_text(f"Id,Date,Transaction\n{hostile},bad,1\n", encoding="utf-8")

    main(["summarize", str(path), "--account", "A1", "--json"])
    out = capsys.readouterr().out

    assert not {"\x9b", "\x7f", "\u202e"} & set(out)
    assert json.loads(out)["rejected"][0]["id"] == hostile


def test_an_account_id_from_an_event_is_literal_in_the_summary_table() -> None:
    """The table title (an account from an event or a file) is never markup."""
    from rich.console import Console  # noqa: PLC0415

    account = AccountSummary.from_json(
        {
            "accountId": f"{MARKUP}\x1b[5m",
            "balance": "1.00",
            "transactionCount": 1,
            "credit": {"count": 1, "total": "1.00", "average": "1.00"},
            "debit": {"count": 0, "total": "0.00", "average": None},
            "months": [],
        }
    )
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=200).print(commands_table(account))

    assert MARKUP in out.getvalue()
    assert OSC8 not in out.getvalue()
    assert "\\x1b[5m" in out.getvalue()


def commands_table(account: AccountSummary) -> object:
    """The table the demo and ``summarize`` print for one account."""
    from stori_pipeline.cli import summary_table  # noqa: PLC0415

    return summary_table(account)


def test_the_demo_output_shows_keys_errors_and_addresses_literally() -> None:
    """The local demo's progress and result lines: keys, errors, emails are text only."""
    out = io.StringIO()
    reporter = commands._ConsoleReporter(out)
    key = f"incoming/A1/{MARKUP}{ESCAPES}.csv"
    reporter.invocation(
        SimpleNamespace(
            line=lambda: f"process-user-transaction {key}: failed ({ESCAPES} {MARKUP})",
            delivered=False,
            final=True,
        ),
        SimpleNamespace(eml=f"out/{MARKUP}.eml", html=None),
    )
    reporter.stage(f"uploaded {key}")
    commands._print_account(
        reporter,
        SimpleNamespace(
            account_id="A1",
            summaries=(),
            rows_rejected=0,
            items_written=0,
            events_routed=0,
            deliveries=[
                SimpleNamespace(
                    email=SimpleNamespace(to=[f"{MARKUP}@x.example\x1b[8m"], eml="a.eml", html=None)
                )
            ],
        ),
    )
    text = out.getvalue()

    assert OSC8 not in text
    assert "\x9b" not in text
    assert "\u202e" not in text
    assert "\x1b[31mred" not in text  # rich colours "failed" red itself; not the key
    assert "\x1b[8m" not in text
    assert text.count(MARKUP) == 5  # the key twice, the error, the email file, the address


def test_the_helpers_escape_every_control_character_and_only_those() -> None:
    """Plain text passes unchanged; each control character becomes a visible escape."""
    assert visible("Año 2024 — ok [x]") == "Año 2024 — ok [x]"
    assert visible("a\x00b\x07c\x7fd\x85e\u2028") == "a\\x00b\\x07c\\x7fd\\x85e\\u2028"
    assert literal("[bold]x[/bold]") == "\\[bold]x\\[/bold]"
    assert json.loads(json_text(json.dumps("\x9b\u202e", ensure_ascii=False))) == "\x9b\u202e"
