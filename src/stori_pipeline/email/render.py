"""Pure rendering of the summary email (SPEC §6): no AWS, no I/O beyond package data.

:func:`render_summary_email` turns an :class:`~stori_pipeline.summary.AccountSummary` and a
:class:`User` into a :class:`RenderedEmail` (subject, inlined-CSS HTML, plain text, inline
images). The HTML template is operator-editable data, so it is rendered by
:mod:`stori_pipeline.email.sandbox`: an immutable Jinja2 sandbox with autoescaping and
``StrictUndefined``, in a forked child process with a time, output-size and memory budget
(:class:`~stori_pipeline.email.sandbox.RenderBudget`). A template that fails to compile or
render, or passes a budget, is reported through a :class:`TemplateProblemReporter` and the
packaged template is used instead; the packaged templates render in-process, in the same
immutable sandbox, from a context the operator's template cannot have changed.

The template context (documented for operators in ``templates/email.html.j2``) holds only
preformatted strings and numbers, so templates never do money arithmetic themselves.
"""

from __future__ import annotations

import base64
import functools
import logging
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Protocol

import css_inline
from jinja2 import StrictUndefined, Template

from stori_pipeline.email.sandbox import (
    DEFAULT_BUDGET,
    OperatorEnvironment,
    RenderBudget,
    UnusableTemplateError,
    failure_reason,
    render_capped,
    run_isolated,
)
from stori_pipeline.summary import MONTH_NAMES, AccountSummary, Flow, MonthSummary

__all__ = [
    "DASH",
    "LOGO_CID",
    "MONTH_NAMES",
    "PACKAGED",
    "InlineImage",
    "MonthRow",
    "RenderedEmail",
    "TemplateProblem",
    "TemplateProblemReporter",
    "User",
    "clean_display_name",
    "format_money",
    "html_with_embedded_images",
    "packaged_template",
    "render_summary_email",
]

logger = logging.getLogger(__name__)

DASH: Final = "\u2014"  # the em dash shown where a month has no credit or no debit
LOGO_CID: Final = "stori-logo@stori-pipeline"
PACKAGED: Final = "packaged"
MAX_NAME_LENGTH: Final = 80
# Zero-width (non-)joiners are legitimate inside names (Persian, Indic scripts, emoji).
_KEEP_FORMAT_CHARS: Final = frozenset("\u200c\u200d")
_LINE_SEPS: Final = frozenset({"Zl", "Zp"})


@dataclass(frozen=True, slots=True)
class User:
    """The recipient: ``email`` is already validated; ``name`` may be empty."""

    account_id: str
    email: str
    name: str


@dataclass(frozen=True, slots=True)
class InlineImage:
    """An image attached to the HTML part and referenced as ``cid:<cid>``."""

    cid: str
    content: bytes
    maintype: str
    subtype: str
    filename: str


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """A rendered message, ready for MIME; ``template_source`` names the HTML template used."""

    subject: str
    html: str
    text: str
    inline_images: tuple[InlineImage, ...]
    template_source: str


@dataclass(frozen=True, slots=True)
class MonthRow:
    """One month as the templates see it: every money value is already a display string."""

    name: str
    year: int | None
    label: str
    transaction_count: int
    average_credit: str
    average_debit: str
    total_credit: str
    total_debit: str


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """Why a custom template was not used: ``reason`` is a short code, ``detail`` the error."""

    source: str
    reason: str
    detail: str


class TemplateProblemReporter(Protocol):
    """Told when a custom template is not used (the handler turns it into a metric)."""

    def __call__(self, problem: TemplateProblem) -> None:
        """Record ``problem``; must not raise."""


def format_money(cents: int) -> str:
    """Two decimals and a thousands separator: ``-123450`` -> ``"-1,234.50"``; no ``-0.00``."""
    whole, frac = divmod(abs(cents), 100)
    return f"{'-' if cents < 0 else ''}{whole:,}.{frac:02d}"


def _average(flow: Flow) -> str:
    cents = flow.average_cents
    return DASH if cents is None else format_money(cents)


def _total(flow: Flow) -> str:
    return DASH if flow.count == 0 else format_money(flow.total_cents)


def clean_display_name(raw: str) -> str:
    """A name safe to show and to put in a header: no control/format/separator characters.

    CR, LF, tabs, bidi overrides and other invisible characters become spaces, runs of white
    space collapse, and the result is cut at 80 characters. HTML is *not* escaped here: that is
    the template's autoescaping, and the MIME layer RFC 2047-encodes it in headers.
    """
    normalized = unicodedata.normalize("NFC", raw)
    kept = "".join(
        ch
        if ch in _KEEP_FORMAT_CHARS
        or not (unicodedata.category(ch).startswith("C") or unicodedata.category(ch) in _LINE_SEPS)
        else " "
        for ch in normalized
    )
    return " ".join(kept.split())[:MAX_NAME_LENGTH].strip()


def _month_row(month: MonthSummary) -> MonthRow:
    name = MONTH_NAMES[month.month - 1]
    return MonthRow(
        name=name,
        year=month.year,
        label=month.label,
        transaction_count=month.transaction_count,
        average_credit=_average(month.credit),
        average_debit=_average(month.debit),
        total_credit=_total(month.credit),
        total_debit=_total(month.debit),
    )


def template_context(summary: AccountSummary, user: User, *, subject: str) -> dict[str, Any]:
    """The variables every template sees (see ``templates/email.html.j2`` for the list)."""
    credit, debit = summary.credit, summary.debit
    account = summary.account_id
    return {
        "subject": subject,
        "name": clean_display_name(user.name),
        "account_id": account,
        "account_hint": account[-4:] if len(account) > 4 else account,
        "balance": format_money(summary.balance_cents),
        "balance_is_negative": summary.balance_cents < 0,
        "transaction_count": summary.transaction_count,
        "credit_count": credit.count,
        "debit_count": debit.count,
        "average_credit": _average(credit),
        "average_debit": _average(debit),
        "total_credit": _total(credit),
        "total_debit": _total(debit),
        "months": [_month_row(m) for m in summary.months],
        "logo_src": f"cid:{LOGO_CID}",
        "dash": DASH,
    }


def _thousands(value: int) -> str:
    return f"{value:,}"


_HTML_ENV: Final = OperatorEnvironment(autoescape=True, undefined=StrictUndefined)
_TEXT_ENV: Final = OperatorEnvironment(
    autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True
)
for _env in (_HTML_ENV, _TEXT_ENV):
    _env.filters["thousands"] = _thousands
# No network and no <link> fetching: every style the email needs is in the template itself.
_INLINER: Final = css_inline.CSSInliner(load_remote_stylesheets=False, keep_link_tags=False)


def _read_package_text(*parts: str) -> str:
    return resources.files(__package__).joinpath("/".join(parts)).read_text(encoding="utf-8")


@functools.cache
def packaged_template() -> str:
    """The HTML template shipped with the code (the fallback and the default)."""
    return _read_package_text("templates", "email.html.j2")


@functools.cache
def _packaged_text_template() -> str:
    return _read_package_text("templates", "email.txt.j2")


@functools.cache
def _logo() -> InlineImage:
    content = resources.files(__package__).joinpath("assets/stori-logo.png").read_bytes()
    return InlineImage(LOGO_CID, content, "image", "png", "stori-logo.png")


# Compiling is the expensive part; warm invocations reuse templates keyed by their source.
@functools.lru_cache(maxsize=16)
def _compile_html(source: str) -> Template:
    return _HTML_ENV.from_string(source)


@functools.lru_cache(maxsize=4)
def _compile_text(source: str) -> Template:
    return _TEXT_ENV.from_string(source)


def _render_html(source: str, context: Mapping[str, Any]) -> str:
    return str(_INLINER.inline(_compile_html(source).render(context)))


# Operator templates a child has compiled and rendered within budget, compiled again here so
# later children inherit them (compiling is most of a child's CPU). Never filled before a child
# succeeded: Jinja compiles deterministically, so the parent's compile is then known to be
# bounded too. A few entries: one function reads one template key.
_VETTED: Final[dict[str, Template]] = {}
_MAX_VETTED: Final = 4


def _render_operator_html(source: str, context: Mapping[str, Any], budget: RenderBudget) -> str:
    """The operator's HTML: compiled, rendered and inlined in a bounded child process.

    The first time a source is seen it is compiled in the child too: Jinja folds constant
    expressions at compile time, so ``{{ 'x'|center(999999999) }}`` already runs there.
    """
    compiled = _VETTED.get(source)

    def work() -> str:
        template = compiled if compiled is not None else _HTML_ENV.from_string(source)
        html = render_capped(template, context, max_bytes=budget.output_bytes)
        return str(_INLINER.inline(html))

    html = run_isolated(work, budget=budget)
    if compiled is None:
        if len(_VETTED) >= _MAX_VETTED:
            del _VETTED[next(iter(_VETTED))]
        _VETTED[source] = _HTML_ENV.from_string(source)
    return html


def render_summary_email(  # noqa: PLR0913 - the options are keyword-only and defaulted
    summary: AccountSummary,
    user: User,
    template: str | None = None,
    *,
    subject: str,
    template_label: str = "custom",
    on_template_problem: TemplateProblemReporter | None = None,
    budget: RenderBudget = DEFAULT_BUDGET,
) -> RenderedEmail:
    """Render the summary email for ``user``.

    Args:
        summary: The account's summary (SPEC §3).
        user: The recipient; the name is cleaned with :func:`clean_display_name`.
        template: A custom HTML template's source; ``None`` uses the packaged one.
        subject: The subject line (also available to templates as ``subject``).
        template_label: How the custom template is named in ``template_source`` and problems
            (the S3 adapter passes ``s3://bucket/key``).
        on_template_problem: Called when the custom template cannot be used; the packaged
            template is then rendered instead (an error is logged either way).
        budget: Time, output size and memory the custom template may use (the defaults are
            the function's; tests pass smaller ones).

    Returns:
        The rendered email; the plain-text part always comes from the packaged text template,
        fed the same context as the HTML, so both parts show the same figures.
    """
    context = template_context(summary, user, subject=subject)
    html: str | None = None
    source = PACKAGED
    if template is not None:
        try:
            html = _render_operator_html(template, context, budget)
            source = template_label
        # Any failure of operator-editable data falls back; BaseExceptions still propagate.
        except Exception as exc:  # noqa: BLE001 - see above
            detail = exc.detail if isinstance(exc, UnusableTemplateError) else str(exc)
            problem = TemplateProblem(template_label, failure_reason(exc), detail)
            logger.error(  # noqa: TRY400 - the traceback of a template error is noise
                "email template %s unusable (%s), using the packaged one: %s",
                problem.source,
                problem.reason,
                problem.detail,
            )
            if on_template_problem is not None:
                on_template_problem(problem)
    if html is None:
        html = _render_html(packaged_template(), context)
    text = _compile_text(_packaged_text_template()).render(context)
    return RenderedEmail(subject, html, text, (_logo(),), source)


def html_with_embedded_images(rendered: RenderedEmail) -> str:
    """The HTML part with ``cid:`` references replaced by ``data:`` URIs.

    For previews only (a browser or a file a person opens): email clients get the real
    multipart/related message, since many block ``data:`` images.
    """
    html = rendered.html
    for image in rendered.inline_images:
        data = base64.b64encode(image.content).decode("ascii")
        html = html.replace(
            f"cid:{image.cid}", f"data:{image.maintype}/{image.subtype};base64,{data}"
        )
    return html
