"""``stori-pipeline demo`` and ``stori-pipeline local up``: the local stack's command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from stori_pipeline.errors import StoriPipelineError
from stori_pipeline.summary import AccountSummary
from stori_pipeline.terminal import json_text, literal, visible

__all__ = ["register"]

EXAMPLE = Path("examples") / "challenge_example.csv"


def _default_files() -> list[Path]:
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (root / EXAMPLE).is_file():
            return [root / EXAMPLE]
    raise StoriPipelineError(f"{EXAMPLE} not found: pass a FILE")


def _files(names: list[str]) -> list[Path]:
    files = [Path(f) for f in names] or _default_files()
    for path in files:
        if not path.is_file():
            raise StoriPipelineError(f"cannot read {path}")
    return files


class _ConsoleReporter:
    """Concise human log lines and a rows/s progress bar, on ``out``."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console  # noqa: PLC0415 - only the human output needs rich
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(file=out, highlight=False)
        self.progress = Progress(
            TextColumn("ingesting"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._task: Any = None
        self._started = time.monotonic()

    def stage(self, text: str) -> None:
        self.console.print(f"[dim]·[/dim] {literal(text)}")

    def invocation(self, invocation: Any) -> None:
        detail = invocation.event.get("detail", {})
        what = (
            detail.get("object", {}).get("key")
            or detail.get("summary", {}).get("accountId")
            or detail.get("accountId")  # a schemaVersion 2 (claim-check) event
        )
        outcome = (
            "[green]ok[/green]"
            if invocation.ok
            else f"[red]failed[/red] ({literal(invocation.error.strip().splitlines()[-1])})"
        )
        self.console.print(
            f"[dim]·[/dim] {literal(invocation.function)} #{invocation.attempt} {literal(what)}: "
            f"{outcome} in {invocation.seconds:.2f} s"
        )

    def rows_written(self, written: int, total: int) -> None:
        if total <= 0 or not self.console.is_terminal:
            return
        if self._task is None:
            self.progress.start()
            self._task = self.progress.add_task("rows", total=total, rate="")
            self._started = time.monotonic()
        elapsed = max(time.monotonic() - self._started, 1e-6)
        self.progress.update(self._task, completed=written, rate=f"{written / elapsed:,.0f} rows/s")
        if written >= total:
            self.stop()

    def stop(self) -> None:
        if self._task is not None:
            self.progress.stop()


def _print_account(console: Any, account: Any) -> None:
    from stori_pipeline.cli import summary_table  # noqa: PLC0415 - cli imports this module

    summaries: tuple[AccountSummary, ...] = account.summaries
    for summary in summaries:
        console.print(summary_table(summary))
    console.print(
        f"  rows rejected {account.rows_rejected:,} · items written {account.items_written:,} · "
        f"events routed {account.events_routed}"
    )
    for sent in account.emails:
        console.print(f"  email to {literal(', '.join(sent.to))}: {literal(sent.eml)}")
        if sent.html is not None:
            console.print(f"                open: {literal(sent.html)}")
    if not account.emails:
        console.print("  [yellow]no email sent[/yellow]")


def _demo(args: argparse.Namespace) -> int:
    from stori_pipeline.local.demo import find_template, run_demo  # noqa: PLC0415 - local extra

    out = Path(args.out)
    human = sys.stderr if args.json else sys.stdout
    reporter = _ConsoleReporter(human)
    try:
        files = _files(args.files)
        report = asyncio.run(
            run_demo(
                files,
                account=args.account,
                out_dir=out,
                template=Path(args.template) if args.template else find_template(),
                reporter=reporter,
            )
        )
    except StoriPipelineError as exc:
        reporter.stop()
        print(f"stori-pipeline: {visible(exc)}", file=sys.stderr)
        return 1
    reporter.stop()
    if args.json:
        sys.stdout.write(json_text(json.dumps(report.to_json(), ensure_ascii=False)) + "\n")
    else:
        console = reporter.console
        for account in report.accounts:
            _print_account(console, account)
        for path in report.reports:
            console.print(f"rejected rows report: {literal(path)}")
        for function, events in report.dead_letters.items():
            if events:
                console.print(
                    f"[red]{len(events)} event(s) dead-lettered by {literal(function)}[/red] "
                    f"(see {literal(report.log_dir)})"
                )
        console.print(f"function logs: {literal(report.log_dir)}")
    return 0 if report.ok else 1


def _local_up(args: argparse.Namespace) -> int:
    from stori_pipeline.local.up import run_up  # noqa: PLC0415 - local extra

    try:
        return asyncio.run(
            run_up(
                template=Path(args.template) if args.template else None,
                out_dir=Path(args.out),
                port=args.port,
                out=sys.stdout,
                accounts=tuple(args.account or ["AccountId123"]),
            )
        )
    except StoriPipelineError as exc:
        print(f"stori-pipeline: {visible(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("local stack stopped", file=sys.stderr)
        return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo`` and ``local up``."""
    demo = commands.add_parser(
        "demo",
        help="run the whole flow on a local AWS emulator and write the emails to out/",
        description=(
            "Start moto, create the resources template.yaml declares, upload FILE(s) to "
            "incoming/<account>/, run the functions as EventBridge delivers to them, and write "
            "each sent email as .eml and .html under --out."
        ),
    )
    demo.add_argument("files", metavar="FILE", nargs="*", help=f"CSV files (default: {EXAMPLE})")
    demo.add_argument("--account", default="AccountId123", metavar="ID", help="upload folder")
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.add_argument("--out", default="out", metavar="DIR", help="where emails and logs go")
    demo.add_argument(
        "--template", metavar="PATH", help="the SAM template (default: ./template.yaml)"
    )
    demo.set_defaults(command=_demo)

    local = commands.add_parser("local", help="the local stack")
    actions = local.add_subparsers(metavar="ACTION", required=True)
    up = actions.add_parser(
        "up",
        help="keep the local stack running (Ctrl-C stops it)",
        description="Provision the local stack, print how to use it, and dispatch until Ctrl-C.",
    )
    up.add_argument("--port", type=int, default=5000, help="the emulator's port (default 5000)")
    up.add_argument(
        "--account", action="append", metavar="ID", help="seed a demo user (repeatable)"
    )
    up.add_argument("--out", default="out", metavar="DIR", help="where emails and logs go")
    up.add_argument(
        "--template", metavar="PATH", help="the SAM template (default: ./template.yaml)"
    )
    up.set_defaults(command=_local_up)
