"""The command line itself: --version, defaults in --help, stdin, the local extra."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from stori_pipeline.cli import build_parser, main


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`--version` prints the distribution's version and exits 0."""
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"stori-pipeline {metadata.version('stori-pipeline')}\n"


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["generate", "--help"], "(default: go)"),
        (["generate", "--help"], "(default: 1)"),
        (["status", "--help"], "(default: 20)"),
        (["template", "push", "--help"], "(default: email/summary.html.j2)"),
    ],
)
def test_help_shows_defaults(
    argv: list[str], shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every subcommand's --help shows its options' defaults, nested ones included."""
    with pytest.raises(SystemExit):
        main(argv)
    assert shown in " ".join(capsys.readouterr().out.split())


def test_help_does_not_show_empty_defaults() -> None:
    """Options without a default (None) or flags (False) get no '(default: None)'."""
    text = build_parser().format_help()
    for action in build_parser()._subparsers._group_actions:  # type: ignore[union-attr]
        for child in action.choices.values():  # type: ignore[union-attr]
            text += child.format_help()
    assert "(default: None)" not in text
    assert "(default: False)" not in text


def test_summarize_dash_reads_stdin(
    example_csv: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`summarize -` reads the file from standard input."""
    stdin = io.TextIOWrapper(io.BytesIO(example_csv.read_bytes()))
    monkeypatch.setattr(sys, "stdin", stdin)
    status = main(["summarize", "-", "--account", "AccountId123", "--json"])
    assert status == 0
    (account,) = json.loads(capsys.readouterr().out)["accounts"]
    assert account["balance"] == "39.74"


def test_demo_without_the_local_extra_names_the_extra() -> None:
    """Without moto, `demo` says to install the 'local' extra instead of a traceback."""
    # A fresh interpreter in which `import moto` fails as if moto were not installed.
    code = (
        "import sys; sys.modules['moto'] = None\n"
        "from stori_pipeline.cli import main\n"
        "sys.exit(main(['demo']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1, done.stderr
    assert "'local' extra" in done.stderr
    assert "stori-pipeline[local]" in done.stderr
    assert "Traceback" not in done.stderr
