"""``stori-pipeline demo`` and ``stori-pipeline local up``: the local stack's command line.

Both stop cleanly on Ctrl-C or SIGTERM within seconds, hung handlers included: the signal
cancels the run, which kills every worker process before the emulator stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TextIO, TypeVar

from stori_pipeline.errors import StoriPipelineError
from stori_pipeline.summary import AccountSummary
from stori_pipeline.terminal import json_text, visible

__all__ = ["EXIT_NOT_DELIVERED", "EXIT_OK", "register"]

EXAMPLE = Path("examples") / "challenge_example.csv"

EXIT_OK = 0
EXIT_NOT_DELIVERED = 1  # also: the stack could not be set up (one line on stderr says which)
# Stopped by a signal: 128 + its number, as a shell reports a process the signal killed.
EXIT_SIGNALLED = 128

_T = TypeVar("_T")

DEMO_EXIT_STATUS = """\
exit status:
  0    everything delivered: every file stored and its summaries published, every summary
       emailed (a duplicate delivery skipped by idempotency counts as delivered)
  1    something was not delivered (a rejected file, an unknown user, an invalid address,
       an invalid event, a dead-lettered event: each is listed), or the stack failed
  130  stopped by Ctrl-C; 143 stopped by SIGTERM
"""


class _Stopped(Exception):  # noqa: N818 - a signal, not an error
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


async def _until_signalled(work: Coroutine[Any, Any, _T]) -> _T:
    """Run ``work``; SIGINT or SIGTERM cancels it (its cleanup runs) and raises ``_Stopped``.

    A second signal while cleaning up falls back to the default action, so a stuck
    shutdown can still be interrupted.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    received: list[int] = []

    def cancel() -> None:
        # Again every second until it is done: library code (Python 3.11's wait_for among
        # others) can swallow one cancellation, and a stop must not depend on where it lands.
        if not task.done():
            task.cancel()
            loop.call_later(1.0, cancel)

    def stop(signum: int) -> None:
        received.append(signum)
        for each in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(each)
        cancel()

    for each in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(each, stop, each)
    try:
        return await task
    except asyncio.CancelledError:
        if received:
            raise _Stopped(received[0]) from None
        raise
    finally:
        for each in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(each)


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
    """Concise human log lines and a rows/s progress bar, on ``out``.

    Every text that came from a file or from AWS (keys, account ids, error messages) is
    printed as a ``Text``, never parsed as rich markup.
    """

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console  # noqa: PLC0415 - only the human output needs rich
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        # soft_wrap: a long path or key stays on one line, so it can be copied as printed.
        self.console = Console(file=out, highlight=False, soft_wrap=True)
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

    def text(self, text: str, style: str = "") -> None:
        from rich.text import Text  # noqa: PLC0415

        # Keys, ids and messages come from files and AWS: no markup, no control characters.
        self.console.print(Text(visible(text), style=style))

    def stage(self, text: str) -> None:
        self.text(f"· {text}", "dim")

    def invocation(self, described: Any, sent: Any) -> None:
        style = "" if described.delivered else ("red" if described.final else "yellow")
        self.text(f"· {described.line()}", style)
        if sent is not None:
            self.text(f"    email: {sent.eml}")
            if sent.html is not None:
                self.text(f"    open:  {sent.html}")

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
            self._task = None


def _print_upload(reporter: _ConsoleReporter, upload: Any) -> None:
    reporter.text(f"{upload.key}: {upload.outcome}", "bold" if upload.delivered else "bold red")
    if upload.rows_read is not None:
        reporter.text(
            f"  rows read {upload.rows_read:,} · accepted {upload.rows_accepted:,} · "
            f"rejected {upload.rows_rejected:,} · items written {upload.items_written:,} · "
            f"events published {upload.events_published:,}"
        )
    if upload.file_error:
        reporter.text(f"  file rejected: {upload.file_error} ({upload.file_error_reason})", "red")
    elif not upload.delivered:
        reporter.text(f"  {upload.reason}", "red")
    if upload.report is not None:
        reporter.text(f"  rejected rows report: {upload.report}")


def _print_account(reporter: _ConsoleReporter, account: Any) -> None:
    from stori_pipeline.cli import summary_table  # noqa: PLC0415 - cli imports this module

    summaries: tuple[AccountSummary, ...] = account.summaries
    for summary in summaries:
        reporter.console.print(summary_table(summary))
    reporter.text(
        f"  {account.account_id}: rows rejected {account.rows_rejected:,} · items written "
        f"{account.items_written:,} · events routed {account.events_routed}"
    )
    for delivery in account.deliveries:
        sent = delivery.email
        if sent is not None:
            reporter.text(f"  email to {', '.join(sent.to)}: {sent.eml}")
            if sent.html is not None:
                reporter.text(f"                open: {sent.html}")
        else:
            reporter.text(f"  email {delivery.outcome} ({delivery.reason})", "red")
    if not account.deliveries:
        reporter.text("  no summary event, no email", "yellow")


def _run_local(work: Coroutine[Any, Any, _T]) -> _T:
    """Run a local-stack command until done or signalled; no worker process outlives it."""
    from stori_pipeline.local.dispatcher import stop_worker_processes  # noqa: PLC0415

    try:
        return asyncio.run(_until_signalled(work))
    finally:
        stop_worker_processes()


def _stopped(exc: _Stopped, what: str) -> int:
    print(f"stori-pipeline: {what} stopped ({exc})", file=sys.stderr)
    return EXIT_SIGNALLED + exc.signum


def _demo(args: argparse.Namespace) -> int:
    from stori_pipeline.local.demo import find_template, run_demo  # noqa: PLC0415 - local extra

    out = Path(args.out)
    human = sys.stderr if args.json else sys.stdout
    reporter = _ConsoleReporter(human)
    try:
        files = _files(args.files)
        report = _run_local(
            run_demo(
                files,
                account=args.account,
                out_dir=out,
                template=Path(args.template) if args.template else find_template(),
                reporter=reporter,
                parameter_overrides=args.parameter_overrides,
                locale=args.locale,
            )
        )
    except StoriPipelineError as exc:
        reporter.stop()
        print(f"stori-pipeline: {visible(exc)}", file=sys.stderr)
        return EXIT_NOT_DELIVERED
    except _Stopped as exc:
        reporter.stop()
        return _stopped(exc, "demo")
    reporter.stop()
    if args.json:
        sys.stdout.write(json_text(json.dumps(report.to_json(), ensure_ascii=False)) + "\n")
    else:
        for upload in report.uploads:
            _print_upload(reporter, upload)
        for account in report.accounts:
            _print_account(reporter, account)
        reporter.text(f"function logs: {report.log_dir}")
        if report.problems:
            reporter.text(f"not delivered ({len(report.problems)}):", "bold red")
            for problem in report.problems[:50]:
                reporter.text(f"  {problem}", "red")
            if len(report.problems) > 50:
                reporter.text(f"  … and {len(report.problems) - 50} more (--json lists all)")
        else:
            reporter.text("everything delivered", "bold green")
    return EXIT_OK if report.ok else EXIT_NOT_DELIVERED


def _local_up(args: argparse.Namespace) -> int:
    from stori_pipeline.local.up import run_up  # noqa: PLC0415 - local extra

    try:
        return _run_local(
            run_up(
                template=Path(args.template) if args.template else None,
                out_dir=Path(args.out),
                port=args.port,
                host=args.host,
                out=sys.stdout,
                accounts=tuple(args.account or ["AccountId123"]),
                parameter_overrides=args.parameter_overrides,
                locale=args.locale,
            )
        )
    except StoriPipelineError as exc:
        print(f"stori-pipeline: {visible(exc)}", file=sys.stderr)
        return EXIT_NOT_DELIVERED
    except _Stopped as exc:
        return _stopped(exc, "local stack")


def _locale(text: str) -> str:
    from stori_pipeline.localization import (  # noqa: PLC0415 - only --locale needs Babel
        UnsupportedLocaleError,
        locale_tag,
    )

    try:
        return locale_tag(text)
    except UnsupportedLocaleError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (e.g. es-MX, en-US)") from None


def _add_locale_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--locale",
        type=_locale,
        default=None,
        metavar="TAG",
        help="Locale of the demo users, e.g. es-MX, en-US (default: none, so the "
        "template's DefaultLocale applies)",
    )


def _add_parameter_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parameter-overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help=(
            "template parameters, as sam deploy takes them (e.g. NumWorkers=4 LogLevel=DEBUG); "
            "each must be one of the template's Parameters"
        ),
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo`` and ``local up``."""
    demo = commands.add_parser(
        "demo",
        help="run the whole flow on a local AWS emulator and write the emails to out/",
        description=(
            "Start moto, create the resources template.yaml declares, upload FILE(s) "
            "(to incoming/<file> when it has an AccountId column, else to "
            "incoming/<account>/<file>), run the functions as EventBridge delivers to them, "
            "print each invocation's outcome as it ends, and write each sent email as .eml "
            "and .html under --out."
        ),
        epilog=DEMO_EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("files", metavar="FILE", nargs="*", help=f"CSV files (default: {EXAMPLE})")
    demo.add_argument(
        "--account",
        default="AccountId123",
        metavar="ID",
        help="upload folder of files without an AccountId column (default: AccountId123)",
    )
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.add_argument("--out", default="out", metavar="DIR", help="where emails and logs go")
    demo.add_argument(
        "--template", metavar="PATH", help="the SAM template (default: ./template.yaml)"
    )
    _add_parameter_overrides(demo)
    _add_locale_option(demo)
    demo.set_defaults(command=_demo)

    local = commands.add_parser("local", help="the local stack")
    actions = local.add_subparsers(metavar="ACTION", required=True)
    up = actions.add_parser(
        "up",
        help="keep the local stack running (Ctrl-C stops it)",
        description=(
            "Provision the local stack, print how to use it, and dispatch until Ctrl-C or "
            "SIGTERM, printing each invocation's outcome."
        ),
    )
    up.add_argument("--port", type=int, default=5000, help="the emulator's port (default 5000)")
    up.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDRESS",
        help=(
            "the address the emulator listens on (default 127.0.0.1); 0.0.0.0 lets Docker "
            "containers (sam local invoke) reach it — and anyone on your network"
        ),
    )
    up.add_argument(
        "--account", action="append", metavar="ID", help="seed a demo user (repeatable)"
    )
    up.add_argument("--out", default="out", metavar="DIR", help="where emails and logs go")
    up.add_argument(
        "--template", metavar="PATH", help="the SAM template (default: ./template.yaml)"
    )
    _add_parameter_overrides(up)
    _add_locale_option(up)
    up.set_defaults(command=_local_up)
