"""The customer's language and currency: locales, money, months, periods and the email's words.

Stori's customers are in Mexico, so the deployment's default locale is ``es-MX`` and its
currency ``MXN`` (SPEC §6); a recipient's ``Users.Locale`` overrides the language and the
number and date conventions, never the currency (the account's money is what it is). Every
convention comes from CLDR through Babel — month names, digit grouping, currency symbols,
plural rules, interval and list patterns — and only the email's sentences are written here,
in :data:`MESSAGES`, one catalog per supported language.

Pure and synchronous: no AWS, no I/O beyond Babel's packaged locale data. The values it
returns are plain strings; money and counts are :class:`Figure` strings, which autoescaping
HTML templates render with line-break opportunities between digit groups only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Final

from babel import Locale, UnknownLocaleError
from babel.dates import format_interval, format_skeleton
from babel.numbers import format_currency, format_decimal, get_currency_name, list_currencies
from markupsafe import escape

from stori_pipeline.errors import PermanentError
from stori_pipeline.money import cents_to_decimal

__all__ = [
    "DASH",
    "DEFAULT_CURRENCY",
    "DEFAULT_LOCALE",
    "MESSAGES",
    "SUPPORTED_LANGUAGES",
    "Figure",
    "Localizer",
    "Presentation",
    "UnsupportedCurrencyError",
    "UnsupportedLocaleError",
    "check_currency",
    "locale_tag",
    "parse_locale",
]

# Stori's customers are in Mexico: Spanish as spoken there, money in Mexican pesos.
DEFAULT_LOCALE: Final = "es-MX"
DEFAULT_CURRENCY: Final = "MXN"
DASH: Final = "\u2014"  # shown where a month has no credit or no debit

# A separator between digits that is followed by exactly three digits is a digit-group
# separator (the decimal part of a money figure has two); breaking a line there keeps every
# group whole, so "$123,456,789.01" may wrap as "$123,456," / "789.01", never inside a group.
_GROUP_SEPARATOR: Final = re.compile(r"(?<=\d)(\D)(?=\d{3}(?:\D|$))")
_NOWRAP: Final = '<span style="white-space:nowrap">'


class UnsupportedLocaleError(PermanentError, ValueError):
    """``tag`` is not a locale Babel knows in a language the email is written in."""

    def __init__(self, tag: str, reason: str) -> None:
        self.tag = tag
        self.reason = reason
        super().__init__(f"locale {tag!r} {reason}")


class UnsupportedCurrencyError(PermanentError, ValueError):
    """``code`` is not an ISO 4217 currency code Babel knows."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(f"currency {code!r} is not an ISO 4217 code (e.g. MXN, USD)")


class Figure(str):
    """A formatted number (money, a count) that may wrap only between its digit groups.

    A plain ``str`` everywhere (the text part, comparisons, filters); autoescaping HTML
    templates call :meth:`__html__`, which keeps each group on one line and lets the line
    break only after a group separator — so a 15-digit amount on a phone wraps at a comma
    instead of overflowing or splitting mid-number.
    """

    __slots__ = ()

    def __html__(self) -> str:
        """Escaped, each run up to a group separator unbreakable, ``<wbr>`` between runs."""
        runs = _GROUP_SEPARATOR.sub("\\1\0", str(self)).split("\0")
        return "<wbr>".join(f"{_NOWRAP}{escape(run)}</span>" for run in runs)


# The email's sentences. Plural entries are keyed by CLDR plural category ("one", "other");
# a missing category falls back to "other". Placeholders are str.format fields.
MESSAGES: Final[Mapping[str, Mapping[str, str | Mapping[str, str]]]] = {
    "es": {
        "subject": "Tu resumen de cuenta Stori: {period}",
        "subject_without_period": "Tu resumen de cuenta Stori",
        "greeting": "¡Hola!",
        "greeting_name": "¡Hola, {name}!",
        "lead": (
            "Este es el resumen de los movimientos que acabamos de procesar de tu cuenta "
            "con terminación {account_hint}."
        ),
        "period_label": "Periodo",
        "balance_label": "Saldo total",
        "transactions_in_statement": {
            "one": "{count} movimiento en este periodo",
            "other": "{count} movimientos en este periodo",
        },
        "preheader": {
            "one": "Tu saldo es {balance}, con {count} movimiento ({period}).",
            "other": "Tu saldo es {balance}, con {count} movimientos ({period}).",
        },
        "average_credit": "Abono promedio",
        "average_debit": "Cargo promedio",
        "credits": {"one": "{count} abono", "other": "{count} abonos"},
        "debits": {"one": "{count} cargo", "other": "{count} cargos"},
        "months_title": "Mes por mes",
        "month_column": "Mes",
        "transactions_column": "Movimientos",
        "average_credit_column": "Abono prom.",
        "average_debit_column": "Cargo prom.",
        "overall_row": "Todo el periodo",
        "totals_label": "Movimientos",
        "fine_print": (
            "Los promedios son por movimiento. Los importes aparecen como en tu estado de "
            "cuenta; los cargos son negativos. Importes en {currency_name} ({currency})."
        ),
        "support_email_phone": "¿Dudas? Escríbenos a {email} o llámanos al {phone}.",
        "support_email": "¿Dudas? Escríbenos a {email}.",
        "support_phone": "¿Dudas? Llámanos al {phone}.",
        "support_app": "¿Dudas? Contáctanos desde la app de Stori.",
        "security_note": (
            "Stori nunca te pedirá tu contraseña, NIP ni códigos de verificación por correo, "
            "teléfono o mensaje. Si algo te parece sospechoso, no respondas y contáctanos."
        ),
        "reason": (
            "Recibes este correo porque tienes una cuenta Stori y acabamos de procesar "
            "movimientos de tu cuenta."
        ),
        "automated": "Este es un mensaje automático; por favor no lo respondas.",
    },
    "en": {
        "subject": "Your Stori account summary: {period}",
        "subject_without_period": "Your Stori account summary",
        "greeting": "Hi,",
        "greeting_name": "Hi {name},",
        "lead": (
            "Here is the summary of the transactions we just processed for your account "
            "ending in {account_hint}."
        ),
        "period_label": "Period",
        "balance_label": "Total balance",
        "transactions_in_statement": {
            "one": "{count} transaction in this period",
            "other": "{count} transactions in this period",
        },
        "preheader": {
            "one": "Your balance is {balance}, with {count} transaction ({period}).",
            "other": "Your balance is {balance}, with {count} transactions ({period}).",
        },
        "average_credit": "Average credit",
        "average_debit": "Average debit",
        "credits": {"one": "{count} credit", "other": "{count} credits"},
        "debits": {"one": "{count} debit", "other": "{count} debits"},
        "months_title": "Month by month",
        "month_column": "Month",
        "transactions_column": "Transactions",
        "average_credit_column": "Avg. credit",
        "average_debit_column": "Avg. debit",
        "overall_row": "Whole period",
        "totals_label": "Transactions",
        "fine_print": (
            "Averages are per transaction. Amounts are shown as they appear in your "
            "statement; debits are negative. Amounts in {currency_name} ({currency})."
        ),
        "support_email_phone": "Questions? Write to {email} or call {phone}.",
        "support_email": "Questions? Write to {email}.",
        "support_phone": "Questions? Call {phone}.",
        "support_app": "Questions? Contact us in the Stori app.",
        "security_note": (
            "Stori will never ask for your password, PIN or verification codes by email, "
            "phone or text. If something looks suspicious, do not reply and contact us."
        ),
        "reason": (
            "You are receiving this email because you have a Stori account and we just "
            "processed transactions for it."
        ),
        "automated": "This is an automated message, please do not reply.",
    },
}
SUPPORTED_LANGUAGES: Final = tuple(MESSAGES)


def parse_locale(tag: str) -> Locale:
    """The Babel locale of a BCP 47 tag (``es-MX``; ``es_MX`` and any case are accepted).

    Raises:
        UnsupportedLocaleError: Babel does not know the tag, or the email is not written in
            its language (:data:`SUPPORTED_LANGUAGES`).
    """
    text = tag.strip().replace("_", "-")
    if not text or len(text) > 35 or not re.fullmatch(r"[A-Za-z0-9-]+", text):
        raise UnsupportedLocaleError(tag, "is not a locale tag such as es-MX")
    try:
        locale = Locale.parse(text, sep="-")
    except (UnknownLocaleError, ValueError):
        raise UnsupportedLocaleError(tag, "is not a locale Babel knows") from None
    if locale.language not in MESSAGES:
        raise UnsupportedLocaleError(
            tag, f"is in a language the email is not written in ({', '.join(MESSAGES)})"
        )
    return locale


def check_currency(code: str) -> str:
    """The upper-cased ISO 4217 ``code``, or :class:`UnsupportedCurrencyError`."""
    upper = code.strip().upper()
    if upper not in list_currencies():
        raise UnsupportedCurrencyError(code)
    return upper


def _tag(locale: Locale) -> str:
    return "-".join(p for p in (locale.language, locale.script, locale.territory) if p)


def locale_tag(tag: str) -> str:
    """The canonical BCP 47 form of a supported tag: ``es_mx`` -> ``es-MX``."""
    return _tag(parse_locale(tag))


def _capitalized(text: str) -> str:
    # Spanish month names are lower case inside a sentence, capitalized at the start of a cell.
    return text[:1].upper() + text[1:]


@dataclass(frozen=True, slots=True)
class Presentation:
    """How a deployment presents the email: default locale, currency, support contact.

    ``support_email`` and ``support_phone`` are optional (empty: the footer points to the
    app). Build it validated with :meth:`create`.
    """

    default_locale: str = DEFAULT_LOCALE
    currency: str = DEFAULT_CURRENCY
    support_email: str = ""
    support_phone: str = ""

    @classmethod
    def create(
        cls,
        default_locale: str = DEFAULT_LOCALE,
        currency: str = DEFAULT_CURRENCY,
        support_email: str = "",
        support_phone: str = "",
    ) -> Presentation:
        """Validate the locale and currency (raises the ``Unsupported*Error``s) and normalize."""
        return cls(
            _tag(parse_locale(default_locale)),
            check_currency(currency),
            support_email.strip(),
            " ".join(support_phone.split()),
        )

    def localizer(self, preferred: str | None = None) -> Localizer:
        """The recipient's localizer: ``preferred`` (``Users.Locale``) when supported.

        An unusable ``preferred`` falls back to :attr:`default_locale` (a customer with a
        mistyped locale still gets their email); :attr:`Localizer.fallback_from` records it.
        """
        fallback_from: str | None = None
        if preferred is not None and preferred.strip():
            try:
                locale = parse_locale(preferred)
            except UnsupportedLocaleError:
                fallback_from = preferred
            else:
                default = parse_locale(self.default_locale)
                # A bare language ("es") means the deployment's own variant of it (es-MX).
                if locale.territory is None and locale.language == default.language:
                    locale = default
                return Localizer(locale, self.currency)
        return Localizer(parse_locale(self.default_locale), self.currency, fallback_from)


@dataclass(frozen=True, slots=True)
class Localizer:
    """Formats for one locale and currency; every method is pure."""

    locale: Locale
    currency: str = DEFAULT_CURRENCY
    fallback_from: str | None = field(default=None, compare=False)

    @property
    def tag(self) -> str:
        """The BCP 47 tag (``es-MX``): the HTML ``lang`` attribute."""
        return _tag(self.locale)

    @property
    def messages(self) -> Mapping[str, str | Mapping[str, str]]:
        """This language's catalog."""
        return MESSAGES[self.locale.language]

    def money(self, cents: int) -> Figure:
        """``-123450`` -> ``"-$1,234.50"`` (es-MX, MXN); never rounded to the currency's digits."""
        # currency_digits=False: the locale's pattern keeps two decimals even for currencies
        # without minor units, so a customer's cents are shown, not rounded away.
        return Figure(
            format_currency(
                cents_to_decimal(cents), self.currency, locale=self.locale, currency_digits=False
            )
        )

    def money_or_dash(self, cents: int | None) -> Figure:
        """:meth:`money`, or an em dash for "none"."""
        return Figure(DASH) if cents is None else self.money(cents)

    def number(self, value: int) -> Figure:
        """A count with the locale's digit grouping: ``1234567`` -> ``"1,234,567"``."""
        return Figure(format_decimal(value, locale=self.locale))

    def currency_name(self, count: int = 2) -> str:
        """The currency's name for ``count`` units: ``"pesos mexicanos"``."""
        return get_currency_name(self.currency, count=count, locale=self.locale)

    def month_name(self, month: int) -> str:
        """The stand-alone month name, capitalized: ``7`` -> ``"Julio"`` / ``"July"``."""
        return _capitalized(self.locale.months["stand-alone"]["wide"][month])

    def month_label(self, year: int | None, month: int) -> str:
        """``"Julio"``, or with the year ``"Julio de 2024"`` / ``"July 2024"``."""
        if year is None:
            return self.month_name(month)
        return _capitalized(format_skeleton("yMMMM", date(year, month, 1), locale=self.locale))

    def period(self, months: Iterable[tuple[int | None, int]]) -> str:
        """The months a statement covers, as a range: ``"julio - agosto de 2024"`` (en dash).

        SPEC §3's summary carries (year, month) buckets, not days, so the period is the first
        to the last month present. Months with a year form a dated range; months without one
        (dates written ``M/D``) a range of names; a file with both shows both ranges.
        """
        keys = sorted(set(months), key=lambda k: (k[0] or 0, k[1]))
        parts: list[str] = []
        undated = [m for y, m in keys if y is None]
        if undated:
            names = [self.locale.months["format"]["wide"][m] for m in (undated[0], undated[-1])]
            parts.append(
                names[0]
                if names[0] == names[1]
                else self.locale.interval_formats[None].format(*names)
            )
        dated = [date(y, m, 1) for y, m in keys if y is not None]
        if dated:
            first, last = dated[0], dated[-1]
            parts.append(
                format_skeleton("yMMMM", first, locale=self.locale)
                if first == last
                else format_interval(first, last, "yMMMM", locale=self.locale)
            )
        return self.join(parts)

    def join(self, parts: list[str]) -> str:
        """``["a", "b"]`` -> ``"a y b"``: the locale's list pattern."""
        from babel.lists import format_list  # noqa: PLC0415 - rarely needed (mixed periods)

        return format_list(parts, locale=self.locale) if len(parts) > 1 else "".join(parts)

    def message(self, key: str, **values: object) -> str:
        """The catalog sentence ``key`` with ``values`` filled in."""
        entry = self.messages[key]
        if not isinstance(entry, str):
            raise TypeError(f"message {key!r} is a plural: use plural()")
        return entry.format(**values)

    def plural(self, key: str, count: int, **values: object) -> str:
        """The plural sentence ``key`` for ``count`` (CLDR rules), ``{count}`` grouped."""
        entry = self.messages[key]
        if isinstance(entry, str):
            raise TypeError(f"message {key!r} is not a plural: use message()")
        form = self.locale.plural_form(count)
        return entry.get(form, entry["other"]).format(count=self.number(count), **values)

    def decimal(self, cents: int | None) -> Decimal | None:
        """The raw amount for templates that compute (``Decimal`` with two places)."""
        return None if cents is None else cents_to_decimal(cents)
