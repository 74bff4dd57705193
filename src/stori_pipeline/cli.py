"""The ``stori-pipeline`` command line.

Every subcommand maps errors to a one-line message on stderr and an exit status; no traceback
reaches the user for bad input. Subcommands are registered by small ``_add_*`` functions so
feature modules (local demo, seeding, operating a deployed stack) plug in without touching the
others; every ``--help`` shows the options' defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.table import Table

from stori_pipeline import seed
from stori_pipeline.local import commands as local_commands
from stori_pipeline.ops import commands as ops_commands
from stori_pipeline.records import Rejection
from stori_pipeline.stream import CHUNK_SIZE, ImportResult, file_chunks, summarize_stream
from stori_pipeline.summary import AccountSummary
from stori_pipeline.synthetic import HeaderStyle, SyntheticSpec, write_synthetic
from stori_pipeline.terminal import json_text, literal, visible

__all__ = ["main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REJECTED = 2

Command = Callable[[argparse.Namespace], int]


def _fail(message: str, status: int = EXIT_REJECTED) -> int:
    # Messages quote file contents and paths: shown literally (terminal.visible).
    print(f"stori-pipeline: {visible(message)}", file=sys.stderr)
    return status


# --- summarize -------------------------------------------------------------------------------


async def _stdin_chunks() -> AsyncIterator[bytes]:
    # A blocking read: nothing else runs on this event loop while it waits for the pipe.
    while chunk := sys.stdin.buffer.read(CHUNK_SIZE):
        yield chunk


def _summarize(args: argparse.Namespace) -> int:
    path = Path("<stdin>" if args.file == "-" else args.file)
    source = _stdin_chunks() if args.file == "-" else file_chunks(path)
    rejected: list[Rejection] = []
    try:
        result = asyncio.run(
            summarize_stream(source, account=args.account, on_reject=rejected.append)
        )
    except OSError as exc:
        return _fail(f"cannot read {path}: {exc.strerror or exc}")
    if args.json:
        # Streamed account by account from the integer buckets (ImportResult.json_chunks):
        # json.dumps of result.to_json() held the summaries three times (frozen values, dicts,
        # one string), and json.dump streams through the pure-Python encoder (20 s at 50,000
        # accounts).
        for chunk in result.json_chunks(rejected):
            sys.stdout.write(json_text(chunk))
        sys.stdout.write("\n")
    else:
        _print_table(result, rejected, sys.stdout)
    if result.file_error is not None:
        where = f" at line {result.file_error_line}" if result.file_error_line else ""
        return _fail(
            f"{path}: file rejected: {result.file_error}{where} ({result.file_error_detail})"
        )
    return EXIT_OK


def _money(cents: int | None) -> str:
    if cents is None:
        return "—"
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole:,}.{frac:02d}"


def summary_table(account: AccountSummary) -> Table:
    """A rich table of one account: a row per month and the overall figures.

    The account id comes from a file or an event: it is shown literally (``terminal.literal``).
    """
    from rich.table import Table  # noqa: PLC0415 - only the human output needs rich

    table = Table(
        title=f"{literal(account.account_id)} — balance {_money(account.balance_cents)}",
        title_justify="left",
    )
    table.add_column("month")
    for name in ("transactions", "avg credit", "avg debit"):
        table.add_column(name, justify="right")
    for m in account.months:
        table.add_row(
            m.label,
            f"{m.transaction_count:,}",
            _money(m.credit.average_cents),
            _money(m.debit.average_cents),
        )
    table.add_row(
        "overall",
        f"{account.transaction_count:,}",
        _money(account.credit.average_cents),
        _money(account.debit.average_cents),
        style="bold",
    )
    return table


def _print_table(result: ImportResult, rejected: list[Rejection], out: TextIO) -> None:
    from rich.console import Console  # noqa: PLC0415 - only the human output needs rich
    from rich.table import Table  # noqa: PLC0415

    console = Console(file=out, highlight=False)
    console.print(
        f"rows read {result.rows_read:,} · accepted {result.rows_accepted:,} · "
        f"rejected {result.rows_rejected:,}"
    )
    for account in result.accounts:
        console.print(summary_table(account))
    if rejected:
        table = Table(title="rejected rows", title_justify="left")
        for name in ("line", "id", "code"):
            table.add_column(name)
        shown = rejected[:50]
        for r in shown:
            table.add_row(str(r.line), literal(r.id), str(r.code))
        console.print(table)
        if len(rejected) > len(shown):
            console.print(f"… and {len(rejected) - len(shown):,} more (use --json for all)")


def _add_summarize(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "summarize",
        help="summarize a local transactions file (no AWS)",
        description="Read a local CSV and print per-account summaries and rejected rows.",
    )
    parser.add_argument("file", metavar="FILE", help="the transactions CSV ('-': standard input)")
    parser.add_argument(
        "--account", metavar="ID", help="account of every row when the file has no AccountId"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object (SPEC §3)")
    parser.set_defaults(command=_summarize)


# --- generate --------------------------------------------------------------------------------


def _generate(args: argparse.Namespace) -> int:
    spec = SyntheticSpec(
        rows=args.rows,
        accounts=args.accounts,
        seed=args.seed,
        style=HeaderStyle(args.style),
        error_rate=args.error_rate,
        year=args.year,
    )
    if spec.style is HeaderStyle.CHALLENGE and spec.accounts != 1:
        return _fail("--style challenge has no AccountId column: use --accounts 1", EXIT_ERROR)
    if args.output == "-":
        write_synthetic(spec, sys.stdout)
        return EXIT_OK
    try:
        with Path(args.output).open("w", encoding="utf-8", newline="") as out:
            written = write_synthetic(spec, out)
    except OSError as exc:
        return _fail(f"cannot write {args.output}: {exc.strerror or exc}", EXIT_ERROR)
    print(f"wrote {written:,} rows to {args.output}", file=sys.stderr)
    return EXIT_OK


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _add_generate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "generate",
        help="write a synthetic transactions file",
        description="Write a realistic synthetic transactions CSV (deterministic per --seed).",
    )
    parser.add_argument("--rows", type=_positive, required=True, help="data rows to write")
    parser.add_argument("--accounts", type=_positive, default=1, help="distinct accounts")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--style",
        choices=[s.value for s in HeaderStyle],
        default=HeaderStyle.GO.value,
        help="header and amount format: the challenge's or the Go system's",
    )
    parser.add_argument("--error-rate", type=_rate, default=0.0, help="share of invalid rows")
    parser.add_argument("--year", type=int, default=None, help="dates as M/D/YYYY in this year")
    parser.add_argument("-o", "--output", default="-", help="file to write ('-': stdout)")
    parser.set_defaults(command=_generate)


# --- entry point -----------------------------------------------------------------------------

_REGISTRARS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_summarize,
    _add_generate,
    seed.register,
    local_commands.register,
    ops_commands.register,
]

# Top-level modules only the `local` extra installs (moto and its server, PyYAML).
_LOCAL_EXTRA_MODULES = frozenset({"moto", "yaml", "flask", "flask_cors", "werkzeug"})


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: …)`` after an option's help, unless there is nothing to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action)


def _use_formatter(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every subcommand's parser, however nested, :class:`_HelpFormatter`."""
    parser.formatter_class = _HelpFormatter
    for action in parser._actions:  # noqa: SLF001 - argparse exposes subparsers only this way
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for child in action.choices.values():
                _use_formatter(child)


def _version() -> str:
    try:
        return metadata.version("stori-pipeline")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="stori-pipeline",
        description="Transactions CSV -> DynamoDB -> per-account summary -> email.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(metavar="COMMAND", required=True)
    for register in _REGISTRARS:
        register(commands)
    _use_formatter(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    command: Command = args.command
    try:
        return command(args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        return EXIT_OK
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in _LOCAL_EXTRA_MODULES:
            raise
        return _fail(
            f"this command needs the 'local' extra ({exc.name} is not installed): "
            "pip install 'stori-pipeline[local]', or in a checkout `make setup`",
            EXIT_ERROR,
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
