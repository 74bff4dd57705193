"""`stori-pipeline template preview`: the message the email function would build, offline."""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage
from pathlib import Path

import pytest

from stori_pipeline.cli import main
from tests.spec_example import spec_example_json

GOOD = '<html><body><img src="{{ logo_src }}"><p>{{ name }}: {{ balance_value }}</p></body></html>'


@pytest.fixture
def summary_file(tmp_path: Path) -> Path:
    """SPEC §3's worked example as one account summary file."""
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(spec_example_json()), encoding="utf-8")
    return path


def write(tmp_path: Path, name: str, body: str | bytes) -> Path:
    """A template file named ``name``."""
    path = tmp_path / name
    if isinstance(body, str):
        path.write_text(body, encoding="utf-8")
    else:
        path.write_bytes(body)
    return path


def preview(template: Path | str, summary: Path | str, out: Path, *extra: str) -> int:
    """Run the command."""
    return main(
        [
            "template",
            "preview",
            str(template),
            "--summary",
            str(summary),
            "--out",
            str(out),
            "--locale",
            "en-US",
            *extra,
        ]
    )


def parse(path: Path) -> EmailMessage:
    """The .eml file as a message."""
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def html_of(message: EmailMessage) -> str:
    """The HTML part's text."""
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def test_good_template_is_used_and_both_files_written(
    tmp_path: Path, summary_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A working template: exit 0, one line naming it, an .eml like the function's, an .html."""
    template = write(tmp_path, "mine.html.j2", GOOD)
    out = tmp_path / "out" / "nested"
    assert preview(template, summary_file, out, "--name", "Ana") == 0
    captured = capsys.readouterr()
    assert captured.out == (
        f"wrote {out / 'preview.eml'} and {out / 'preview.html'} with the template {template}\n"
    )
    assert captured.err == ""
    message = parse(out / "preview.eml")
    assert [p.get_content_type() for p in message.walk()] == [
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
    ]
    assert "<p>Ana: 39.74</p>" in html_of(message)
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    assert "July" in text.get_content()
    assert str(message["Subject"]) == "Your Stori account summary: July – August"  # noqa: RUF001 - the subject uses an en dash
    assert message["To"].addresses[0].addr_spec == "account-holder@example.com"
    page = (out / "preview.html").read_text(encoding="utf-8")
    assert "<p>Ana: 39.74</p>" in page
    assert "data:image/png;base64," in page  # the logo is embedded for a browser
    assert (out / "preview.eml").read_bytes().isascii()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{{ 'x'.ljust(10**9) }}", "out_of_memory"),
        ("{% set _ = months.clear() %}{{ balance }}", "security_error"),
        ("{% for x in %}", "syntax_error"),
        ("{{ no_such_variable }}", "undefined_variable"),
        (b"\xff\xfe {{ balance }}", "not_utf8"),
        (b"x" * (256 * 1024 + 1), "too_large"),
    ],
)
def test_unusable_template_falls_back_and_says_why(
    tmp_path: Path,
    summary_file: Path,
    capsys: pytest.CaptureFixture[str],
    body: str | bytes,
    reason: str,
) -> None:
    """Exit 0 with the packaged template, and one line that names the reason."""
    template = write(tmp_path, "bad.html.j2", body)
    assert preview(template, summary_file, tmp_path / "out") == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 1
    assert f"with the packaged template: {template} fell back ({reason}): " in lines[0]
    assert captured.err == ""
    html = html_of(parse(tmp_path / "out" / "preview.eml"))
    assert "Month by month" in html
    assert "39.74" in html


def test_names_and_details_are_printed_literally(
    tmp_path: Path, summary_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Markup and escape sequences from file names and errors are shown, never interpreted."""
    template = write(
        tmp_path, "[bold red]x[link=mailto:evil@example.com]\x1b[31m.j2", "{% for x in %}"
    )
    assert preview(template, summary_file, tmp_path / "out") == 0
    line = capsys.readouterr().out
    assert "[bold red]x[link=mailto:evil@example.com]\\x1b[31m.j2 fell back (syntax_error)" in line
    assert "\x1b" not in line
    assert line.count("\n") == 1


def test_output_files_match_what_the_function_renders(tmp_path: Path, summary_file: Path) -> None:
    """The preview's HTML part is the one render_summary_email gives for the same input."""
    from stori_pipeline.email import User, render_summary_email  # noqa: PLC0415
    from stori_pipeline.summary import AccountSummary  # noqa: PLC0415

    template = write(tmp_path, "mine.html.j2", GOOD)
    assert preview(template, summary_file, tmp_path / "out", "--name", "Bo") == 0
    rendered = render_summary_email(
        AccountSummary.from_json(spec_example_json()),
        User("AccountId123", "account-holder@example.com", "Bo"),
        GOOD,
        subject="Your Stori account summary",
    )
    assert html_of(parse(tmp_path / "out" / "preview.eml")).strip() == rendered.html.strip()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing template", "cannot read"),
        ("missing summary", "cannot read"),
        ("summary not json", "is not JSON"),
        ("summary is a list", "must hold one account summary object"),
        ("month 13", "a month is out of range"),
        ("no months", "summary is malformed"),
        ("nested too deep", "nested too deeply"),
        ("whole summarize output", "pass one entry of its accounts"),
        ("bad recipient", "no valid email address"),
        ("out is a file", "cannot write to"),
    ],
)
def test_unreadable_input_exits_2_with_one_line(
    tmp_path: Path,
    summary_file: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    message: str,
) -> None:
    """Bad input: exit 2, one line on stderr, no traceback, nothing on stdout."""
    template = write(tmp_path, "mine.html.j2", GOOD)
    summary: Path = summary_file
    out = tmp_path / "out"
    extra: list[str] = []
    bad_summary = {
        "summary not json": "{not json",
        "summary is a list": "[]",
        "month 13": json.dumps(
            {**spec_example_json(), "months": [{**spec_example_json()["months"][0], "month": 13}]}
        ),
        "no months": json.dumps({"accountId": "A1"}),
        "nested too deep": "[" * 100_000,
        "whole summarize output": json.dumps({"rowsRead": 4, "accounts": [spec_example_json()]}),
    }
    if case == "missing template":
        template = tmp_path / "nope.j2"
    elif case == "missing summary":
        summary = tmp_path / "nope.json"
    elif case in bad_summary:
        summary = write(tmp_path, "bad.json", bad_summary[case])
    elif case == "bad recipient":
        extra = ["--email", "not an address"]
    else:
        out = write(tmp_path, "a-file", "x")
    assert preview(template, summary, out, *extra) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("stori-pipeline: template preview: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err
