"""``stori-pipeline template preview``: try an email template before uploading it.

``stori-pipeline template preview TEMPLATE --summary SUMMARY.json --out DIR`` builds the message
exactly as the ``send-user-email`` function would for that template and summary: the same
checks on the template's bytes (size, UTF-8), the same immutable sandbox and render budget,
the same fallback to the packaged template, the same MIME. It writes ``DIR/preview.eml`` (the
raw message SES would get) and ``DIR/preview.html`` (the HTML part with the logo embedded, to
open in a browser), and prints one line saying which template was used and, on a fallback,
why. ``SUMMARY.json`` is one SPEC §3 account summary (an entry of ``summarize --json``'s
``accounts``).

Exit status 0 when an email was built (with either template); 2 with a one-line message on
stderr when an input cannot be read or is invalid, or ``DIR`` cannot be written. No AWS call.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from stori_pipeline.email import TemplateProblem
    from stori_pipeline.summary import AccountSummary

__all__ = [
    "Preview",
    "PreviewInputError",
    "build_preview",
    "literal",
    "read_summary",
    "register",
    "summary_line",
]

EXIT_OK: Final = 0
EXIT_INVALID: Final = 2
DEFAULT_SENDER: Final = "Stori <no-reply@example.com>"
DEFAULT_RECIPIENT: Final = "account-holder@example.com"
DEFAULT_NAME: Final = "Account Holder"
_SHOWN_AS_IS: Final = frozenset({"Cc", "Cf", "Zl", "Zp"})


class PreviewInputError(ValueError):
    """An input of ``template preview`` cannot be read or is invalid (exit status 2)."""


@dataclass(frozen=True, slots=True)
class Preview:
    """A built preview: the raw message, its HTML for a browser, and which template was used."""

    eml: bytes
    html: str
    template_source: str
    problem: TemplateProblem | None


def read_summary(path: Path) -> AccountSummary:
    """One SPEC §3 account summary from a JSON file, validated as the email function does."""
    from stori_pipeline.email import InvalidSummaryEventError, parse_summary_detail  # noqa: PLC0415

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PreviewInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PreviewInputError(f"{path} is not JSON: {exc}") from None
    except RecursionError:
        raise PreviewInputError(f"{path} is nested too deeply to be a summary") from None
    if not isinstance(raw, dict):
        raise PreviewInputError(f"{path} must hold one account summary object (SPEC §3)")
    if "accounts" in raw and "accountId" not in raw:
        raise PreviewInputError(
            f"{path} is a whole `summarize --json` result: pass one entry of its accounts"
        )
    # The function validates a summary inside its event detail: wrap it the same way.
    try:
        event = parse_summary_detail({"schemaVersion": 1, "importId": "preview", "summary": raw})
    except InvalidSummaryEventError as exc:
        raise PreviewInputError(f"{path}: {exc.problem}") from None
    return event.summary


@dataclass(frozen=True, slots=True)
class _Problems:
    """A TemplateProblemReporter that keeps what it is told."""

    seen: list[TemplateProblem]

    def __call__(self, problem: TemplateProblem) -> None:
        self.seen.append(problem)


def build_preview(  # noqa: PLR0913 - every message field has its own option
    template: bytes,
    summary: AccountSummary,
    *,
    label: str,
    sender: str = DEFAULT_SENDER,
    recipient: str = DEFAULT_RECIPIENT,
    name: str = DEFAULT_NAME,
    subject: str | None = None,
    locale: str | None = None,
) -> Preview:
    """The message the email function would send for ``template`` and ``summary``.

    ``locale`` is the recipient's ``Users.Locale`` (``None``: the deployment's default).

    Raises:
        PreviewInputError: ``sender`` or ``recipient`` is not a valid address.
    """
    from stori_pipeline.email import (  # noqa: PLC0415 - keep the CLI's start-up light
        InvalidEmailError,
        TemplateProblem,
        User,
        build_mime,
        html_with_embedded_images,
        normalize_email,
        parse_sender,
        render_summary_email,
    )
    from stori_pipeline.email.sandbox import UnusableTemplateError  # noqa: PLC0415
    from stori_pipeline.email.template_store import decode_template  # noqa: PLC0415

    try:
        sender_address = parse_sender(sender)
        address = normalize_email(recipient, account_id=summary.account_id)
    except (ValueError, InvalidEmailError) as exc:
        raise PreviewInputError(str(exc)) from None

    problems: list[TemplateProblem] = []
    text: str | None
    try:
        text = decode_template(template)
    except UnusableTemplateError as exc:
        problems.append(TemplateProblem(label, exc.reason, exc.detail))
        text = None
    rendered = render_summary_email(
        summary,
        User(summary.account_id, address, name, locale=locale),
        text,
        subject=subject,
        template_label=label,
        on_template_problem=_Problems(problems),
    )
    eml = build_mime(rendered, sender=sender_address, recipient_email=address, recipient_name=name)
    return Preview(
        eml,
        html_with_embedded_images(rendered),
        rendered.template_source,
        next(iter(problems), None),
    )


def literal(text: str) -> str:
    """``text`` on one line, with control and format characters shown as escapes.

    Template names and error details come from files: they are printed as they are (no
    markup is interpreted) and cannot move the cursor, colour the terminal or add lines.
    """
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in _SHOWN_AS_IS
        else ch
        for ch in text
    )


def summary_line(preview: Preview, label: str, out: Path) -> str:
    """The one line the command prints."""
    where = f"wrote {out / 'preview.eml'} and {out / 'preview.html'}"
    if preview.problem is None:
        return literal(f"{where} with the template {label}")
    problem = preview.problem
    return literal(
        f"{where} with the packaged template: {label} fell back ({problem.reason}): "
        f"{problem.detail}"
    )


def _fail(message: str) -> int:
    print(f"stori-pipeline: template preview: {literal(message)}", file=sys.stderr)
    return EXIT_INVALID


@contextlib.contextmanager
def _library_logs_silenced() -> Iterator[None]:
    """The command prints its own line; the library's fallback log would repeat it raw."""
    library = logging.getLogger("stori_pipeline")
    quiet = logging.NullHandler()
    library.addHandler(quiet)
    propagate, library.propagate = library.propagate, False
    try:
        yield
    finally:
        library.propagate = propagate
        library.removeHandler(quiet)


def _template_preview(args: argparse.Namespace) -> int:
    label: str = args.template
    out = Path(args.out)
    with _library_logs_silenced():
        return _build_and_write(args, label, out)


def _build_and_write(args: argparse.Namespace, label: str, out: Path) -> int:
    try:
        try:
            template = Path(label).read_bytes()
        except OSError as exc:
            raise PreviewInputError(f"cannot read {label}: {exc.strerror or exc}") from None
        summary = read_summary(Path(args.summary))
        preview = build_preview(
            template,
            summary,
            label=label,
            sender=args.sender,
            recipient=args.email,
            name=args.name,
            subject=args.subject,
            locale=args.locale,
        )
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / "preview.eml").write_bytes(preview.eml)
            (out / "preview.html").write_text(preview.html, encoding="utf-8")
        except OSError as exc:
            raise PreviewInputError(f"cannot write to {out}: {exc.strerror or exc}") from None
    except PreviewInputError as exc:
        return _fail(str(exc))
    print(summary_line(preview, label, out))
    return EXIT_OK


def register(template_commands: Any) -> None:  # noqa: ANN401 - argparse's private subparsers type
    """Add ``preview`` to the ``template`` command (beside ``push``)."""
    preview = template_commands.add_parser(
        "preview",
        help="build the email a template gives, without AWS",
        description=(
            "Build the message the email function would send for TEMPLATE and one account "
            "summary (same sandbox, budgets, fallback and MIME); write DIR/preview.eml and "
            "DIR/preview.html."
        ),
    )
    preview.add_argument("template", metavar="TEMPLATE", help="the Jinja2 HTML template to try")
    preview.add_argument(
        "--summary",
        required=True,
        metavar="SUMMARY.json",
        help="one SPEC §3 account summary (an entry of `summarize --json`'s accounts)",
    )
    preview.add_argument("--out", required=True, metavar="DIR", help="where to write the files")
    preview.add_argument("--name", default=DEFAULT_NAME, help="recipient name (greeting)")
    preview.add_argument("--email", default=DEFAULT_RECIPIENT, help="recipient address")
    preview.add_argument("--sender", default=DEFAULT_SENDER, help="From address")
    preview.add_argument(
        "--subject", default=None, help="subject (default: the function's, localized)"
    )
    preview.add_argument(
        "--locale",
        default=None,
        help="the recipient's Users.Locale, e.g. es-MX or en-US (default: the deployment's)",
    )
    preview.set_defaults(command=_template_preview)
