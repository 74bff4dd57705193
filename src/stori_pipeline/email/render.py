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

The template context (documented for operators in ``templates/email.html.j2`` and
``docs/email.md``) is in the recipient's language and formats (``Users.Locale``, else the
deployment's default; see :mod:`stori_pipeline.localization`): every value preformatted, and
the raw numbers beside them for templates that compute.
"""

from __future__ import annotations

import base64
import functools
import logging
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
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
from stori_pipeline.localization import DASH, Figure, Localizer, Presentation
from stori_pipeline.summary import MONTH_NAMES, AccountSummary, Flow, MonthSummary

__all__ = [
    "DASH",
    "LOGO_CID",
    "MONTH_NAMES",
    "PACKAGED",
    "InlineImage",
    "MonthRow",
    "Presentation",
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

LOGO_CID: Final = "stori-logo@stori-pipeline"
PACKAGED: Final = "packaged"
MAX_NAME_LENGTH: Final = 80
# Zero-width (non-)joiners are legitimate inside names (Persian, Indic scripts, emoji).
_KEEP_FORMAT_CHARS: Final = frozenset("\u200c\u200d")
_LINE_SEPS: Final = frozenset({"Zl", "Zp"})


@dataclass(frozen=True, slots=True)
class User:
    """The recipient: ``email`` is already validated; ``name`` may be empty.

    ``locale`` is ``Users.Locale`` as stored (``es-MX``), ``None`` when the item has none.
    """

    account_id: str
    email: str
    name: str
    locale: str | None = None


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
    """One row of the month table as templates see it (also the overall row).

    Money and counts come twice: formatted for the recipient's locale and currency
    (:class:`~stori_pipeline.localization.Figure` strings, ``—`` where there is none) and as
    raw numbers (``*_value``: ``Decimal`` or ``None``) for templates that compute.
    ``month`` and ``year`` are ``None`` on the overall row.
    """

    name: str
    year: int | None
    month: int | None
    label: str
    transaction_count: int
    transactions: Figure
    average_credit: Figure
    average_debit: Figure
    total_credit: Figure
    total_debit: Figure
    average_credit_value: Decimal | None
    average_debit_value: Decimal | None
    total_credit_value: Decimal
    total_debit_value: Decimal


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


def _row(  # noqa: PLR0913 - one row's parts, all keyword-only
    local: Localizer,
    *,
    name: str,
    label: str,
    year: int | None,
    month: int | None,
    count: int,
    credit: Flow,
    debit: Flow,
) -> MonthRow:
    return MonthRow(
        name=name,
        year=year,
        month=month,
        label=label,
        transaction_count=count,
        transactions=local.number(count),
        average_credit=local.money_or_dash(credit.average_cents),
        average_debit=local.money_or_dash(debit.average_cents),
        total_credit=local.money_or_dash(credit.total_cents if credit.count else None),
        total_debit=local.money_or_dash(debit.total_cents if debit.count else None),
        average_credit_value=local.decimal(credit.average_cents),
        average_debit_value=local.decimal(debit.average_cents),
        total_credit_value=credit.total,
        total_debit_value=debit.total,
    )


def _month_row(local: Localizer, month: MonthSummary) -> MonthRow:
    return _row(
        local,
        name=local.month_name(month.month),
        label=local.month_label(month.year, month.month),
        year=month.year,
        month=month.month,
        count=month.transaction_count,
        credit=month.credit,
        debit=month.debit,
    )


def _support_line(local: Localizer, presentation: Presentation) -> str:
    email, phone = presentation.support_email, presentation.support_phone
    if email and phone:
        return local.message("support_email_phone", email=email, phone=phone)
    if email:
        return local.message("support_email", email=email)
    if phone:
        return local.message("support_phone", phone=phone)
    return local.message("support_app")


def _messages(  # noqa: PLR0913 - the values the sentences need
    local: Localizer,
    presentation: Presentation,
    summary: AccountSummary,
    *,
    name: str,
    account_hint: str,
    period: str,
    balance: str,
) -> dict[str, str]:
    """Every sentence of the email in the recipient's language, values already filled in."""
    count = summary.transaction_count
    plain = (
        "period_label",
        "balance_label",
        "average_credit",
        "average_debit",
        "months_title",
        "month_column",
        "transactions_column",
        "average_credit_column",
        "average_debit_column",
        "overall_row",
        "security_note",
        "reason",
        "automated",
    )
    return {
        **{key: local.message(key) for key in plain},
        "greeting": local.message("greeting_name", name=name)
        if name
        else local.message("greeting"),
        "lead": local.message("lead", account_hint=account_hint),
        "transactions_note": local.plural("transactions_in_statement", count),
        "preheader": local.plural("preheader", count, balance=balance, period=period),
        "credits_note": local.plural("credits", summary.credit.count),
        "debits_note": local.plural("debits", summary.debit.count),
        "fine_print": local.message(
            "fine_print", currency_name=local.currency_name(), currency=local.currency
        ),
        "support": _support_line(local, presentation),
    }


def _subject(local: Localizer, period: str) -> str:
    # A summary without months (a detail can carry one) has no period to name.
    if period:
        return local.message("subject", period=period)
    return local.message("subject_without_period")


def template_context(
    summary: AccountSummary,
    user: User,
    *,
    subject: str | None = None,
    presentation: Presentation | None = None,
) -> dict[str, Any]:
    """The variables every template sees (listed in ``templates/email.html.j2``, docs/email.md).

    The language and formats are the recipient's (``user.locale``, else the deployment's
    default); ``subject`` ``None`` means the localized subject line.
    """
    presentation = presentation or Presentation()
    local = presentation.localizer(user.locale)
    if local.fallback_from is not None:
        logger.warning(
            "Users.Locale %r of account %s is not usable, writing in %s",
            local.fallback_from,
            user.account_id,
            local.tag,
        )
    credit, debit = summary.credit, summary.debit
    account = summary.account_id
    name = clean_display_name(user.name)
    account_hint = account[-4:] if len(account) > 4 else account
    period = local.period((m.year, m.month) for m in summary.months)
    balance = local.money(summary.balance_cents)
    overall = local.message("overall_row")
    return {
        "subject": subject if subject is not None else _subject(local, period),
        "locale": local.tag,
        "lang": local.tag,
        "currency": local.currency,
        "currency_name": local.currency_name(),
        "name": name,
        "account_id": account,
        "account_hint": account_hint,
        "period": period,
        "balance": balance,
        "balance_value": summary.balance,
        "balance_is_negative": summary.balance_cents < 0,
        "transaction_count": summary.transaction_count,
        "credit_count": credit.count,
        "debit_count": debit.count,
        "average_credit": local.money_or_dash(credit.average_cents),
        "average_debit": local.money_or_dash(debit.average_cents),
        "total_credit": local.money_or_dash(credit.total_cents if credit.count else None),
        "total_debit": local.money_or_dash(debit.total_cents if debit.count else None),
        "average_credit_value": credit.average,
        "average_debit_value": debit.average,
        "total_credit_value": credit.total,
        "total_debit_value": debit.total,
        "months": [_month_row(local, m) for m in summary.months],
        "overall": _row(
            local,
            name=overall,
            label=overall,
            year=None,
            month=None,
            count=summary.transaction_count,
            credit=credit,
            debit=debit,
        ),
        "messages": _messages(
            local,
            presentation,
            summary,
            name=name,
            account_hint=account_hint,
            period=period,
            balance=balance,
        ),
        "support_email": presentation.support_email,
        "support_phone": presentation.support_phone,
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
    subject: str | None = None,
    presentation: Presentation | None = None,
    template_label: str = "custom",
    on_template_problem: TemplateProblemReporter | None = None,
    budget: RenderBudget = DEFAULT_BUDGET,
) -> RenderedEmail:
    """Render the summary email for ``user``.

    Args:
        summary: The account's summary (SPEC §3).
        user: The recipient; the name is cleaned with :func:`clean_display_name`.
        template: A custom HTML template's source; ``None`` uses the packaged one.
        subject: The subject line (also available to templates as ``subject``); ``None``
            means the localized one ("Tu resumen de cuenta Stori: julio - agosto de 2024").
        presentation: The deployment's default locale, currency and support contact
            (``EmailSettings.presentation``); the recipient's ``locale`` wins over the default.
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
    context = template_context(summary, user, subject=subject, presentation=presentation)
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
    return RenderedEmail(context["subject"], html, text, (_logo(),), source)


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
