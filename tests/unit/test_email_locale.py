"""The email in the customer's language and currency (SPEC §6): es-MX and en-US, both parts."""

from __future__ import annotations

import logging
import re

import pytest

from stori_pipeline.email import Presentation, User, render_summary_email
from stori_pipeline.errors import ConfigurationError
from stori_pipeline.localization import (
    UnsupportedCurrencyError,
    UnsupportedLocaleError,
    locale_tag,
)
from stori_pipeline.seed import InvalidSeedInputError
from stori_pipeline.seed import User as SeedUser
from stori_pipeline.settings import EmailSettings
from stori_pipeline.summary import AccountSummary, Flow, MonthSummary
from tests.spec_example import spec_example_json
from tests.unit.test_email_render import cells, visible_text

WORKED_EXAMPLE = AccountSummary.from_json(spec_example_json())
EN_DASH = "\u2013"
RANGE = f"\u2009{EN_DASH}\u2009"  # CLDR's interval pattern: an en dash between thin spaces
DASH = "\u2014"


def _month(year: int | None, month: int, credit: int = 0, debit: int = 0) -> MonthSummary:
    return MonthSummary(
        year,
        month,
        (credit != 0) + (debit != 0),
        Flow(1, credit) if credit else Flow(),
        Flow(1, debit) if debit else Flow(),
    )


def ws(text: str) -> str:
    """White space collapsed (the visible HTML text is compared that way)."""
    return " ".join(text.split())


def _render(summary: AccountSummary, locale: str | None, **options: str) -> tuple[str, str, str]:
    rendered = render_summary_email(
        summary,
        User(summary.account_id, "ana@example.com", "Ana", locale),
        presentation=Presentation.create(**options),
    )
    return rendered.subject, visible_text(rendered.html), rendered.text


def test_worked_example_in_mexican_spanish_and_pesos() -> None:
    """es-MX: $ amounts, Spanish month names, the period, the overall row, in both parts."""
    subject, html, text = _render(WORKED_EXAMPLE, "es-MX")
    assert subject == f"Tu resumen de cuenta Stori: julio{RANGE}agosto"
    for part in (html, text):
        for words in (
            "¡Hola, Ana!",
            f"Periodo: julio{RANGE}agosto",
            "Saldo total",
            "$39.74",
            "Abono promedio",
            "$35.25",
            "(2 abonos)" if part is text else "2 abonos",
            "Cargo promedio",
            "-$15.38",
            "4 movimientos en este periodo",
            "Mes por mes",
            "Importes en pesos mexicanos (MXN).",
            "¿Dudas? Contáctanos desde la app de Stori.",
            "Stori nunca te pedirá tu contraseña",
            "Recibes este correo porque tienes una cuenta Stori",
        ):
            assert ws(words) in ws(part), words
        assert "MX$" not in part  # in Mexico the peso sign is plain $
        assert not re.search(r"\b(July|August|Hi|Month)\b", part)
    assert re.search(r"Julio\s+2\s+\$60\.50\s+-\$10\.30\n", text)
    assert re.search(r"Agosto\s+2\s+\$10\.00\s+-\$20\.46\n", text)
    assert re.search(r"Todo el periodo\s+4\s+\$35\.25\s+-\$15\.38\n", text)


def test_worked_example_table_in_both_locales() -> None:
    """The month table has a row per month and an overall row, formatted per locale."""
    rows = {}
    for locale in ("es-MX", "en-US"):
        rendered = render_summary_email(WORKED_EXAMPLE, User("A", "a@example.com", "", locale))
        rows[locale] = cells(rendered.html)
    assert rows["es-MX"] == [
        ["Julio", "2", "$60.50", "-$10.30"],
        ["Agosto", "2", "$10.00", "-$20.46"],
        ["Todo el periodo", "4", "$35.25", "-$15.38"],
    ]
    assert rows["en-US"] == [
        ["July", "2", "MX$60.50", "-MX$10.30"],
        ["August", "2", "MX$10.00", "-MX$20.46"],
        ["Whole period", "4", "MX$35.25", "-MX$15.38"],
    ]


def test_worked_example_in_american_english() -> None:
    """en-US: English words and months, the peso shown as MX$ so it is not read as dollars."""
    subject, html, text = _render(WORKED_EXAMPLE, "en-US")
    assert subject == f"Your Stori account summary: July{RANGE}August"
    for part in (html, text):
        for words in (
            "Hi Ana,",
            f"Period: July{RANGE}August",
            "Total balance",
            "MX$39.74",
            "-MX$15.38",
            "4 transactions in this period",
            "Whole period",
            "Amounts in Mexican pesos (MXN).",
            "You are receiving this email because you have a Stori account",
        ):
            assert ws(words) in ws(part), words


@pytest.mark.parametrize(
    ("months", "es", "en"),
    [
        ([(2024, 7), (2024, 8)], f"julio{EN_DASH}agosto de 2024", f"July{RANGE}August 2024"),
        (
            [(2024, 1), (2023, 12)],
            f"diciembre de 2023{RANGE}enero de 2024",
            f"December 2023{RANGE}January 2024",
        ),
        ([(2024, 7)], "julio de 2024", "July 2024"),
        ([(None, 9), (None, 7)], f"julio{RANGE}septiembre", f"July{RANGE}September"),
        ([(None, 3)], "marzo", "March"),
        (
            [(2024, 2), (None, 3), (2024, 1)],
            f"marzo y enero{EN_DASH}febrero de 2024",
            f"March and January{RANGE}February 2024",
        ),
    ],
)
def test_period_is_the_range_of_months_covered(
    months: list[tuple[int | None, int]], es: str, en: str
) -> None:
    """First to last month, with the year when the dates carry one; undated months by name."""
    summary = AccountSummary(
        "A", tuple(sorted((_month(y, m, 100) for y, m in months), key=lambda m: m.sort_key))
    )
    for locale, expected in (("es-MX", es), ("en-US", en)):
        _, html, text = _render(summary, locale)
        assert ws(expected) in html
        assert expected in text


def test_month_labels_carry_the_year_when_known() -> None:
    """Month rows: "Septiembre de 2024" / "September 2024"; without a year the name alone."""
    summary = AccountSummary("A", (_month(None, 3, 100), _month(2024, 9, debit=-5)))
    spanish = render_summary_email(summary, User("A", "a@example.com", "", "es-MX"))
    english = render_summary_email(summary, User("A", "a@example.com", "", "en-US"))
    assert [row[0] for row in cells(spanish.html)] == [
        "Marzo",
        "Septiembre de 2024",
        "Todo el periodo",
    ]
    assert [row[0] for row in cells(english.html)] == ["March", "September 2024", "Whole period"]
    assert cells(spanish.html)[1] == ["Septiembre de 2024", "1", DASH, "-$0.05"]


def test_plural_rules_follow_the_language() -> None:
    """One transaction is singular: "1 movimiento", "1 abono" / "1 transaction", "1 credit"."""
    summary = AccountSummary("A", (_month(2024, 5, 100),))
    _, spanish, _ = _render(summary, "es-MX")
    _, english, _ = _render(summary, "en-US")
    assert "1 movimiento en este periodo" in spanish
    assert "1 abono" in spanish
    assert "0 cargos" in spanish
    assert "1 transaction in this period" in english
    assert "1 credit" in english


def test_large_counts_and_amounts_are_grouped() -> None:
    """Counts and money use the locale's digit groups: 1,234,567 and $1,234,567.89."""
    summary = AccountSummary(
        "A", (MonthSummary(2024, 1, 1_234_567, Flow(1_234_567, 1_524_155_677_489), Flow()),)
    )
    _, html, text = _render(summary, "es-MX")
    for part in (html, text):
        assert "1,234,567 movimientos" in part
        assert "$15,241,556,774.89" in part


def test_no_users_locale_uses_the_deployments_default() -> None:
    """A user without Locale gets DEFAULT_LOCALE: es-MX unless the deployment says otherwise."""
    assert "¡Hola, Ana!" in _render(WORKED_EXAMPLE, None)[2]
    assert "Hi Ana," in _render(WORKED_EXAMPLE, None, default_locale="en-US")[2]
    # A bare language means the deployment's own variant of it.
    assert "$39.74" in _render(WORKED_EXAMPLE, "es", default_locale="es-MX")[2]


def test_unusable_users_locale_falls_back_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A Locale the email is not written in still gets an email, in the default, and a log."""
    with caplog.at_level(logging.WARNING):
        _, _, text = _render(WORKED_EXAMPLE, "fr-FR")
    assert "¡Hola, Ana!" in text
    assert "'fr-FR'" in caplog.text


def test_currency_comes_from_the_deployment() -> None:
    """CURRENCY changes the symbol and name, never the amounts (no rounding to its digits)."""
    _, _, usd = _render(WORKED_EXAMPLE, "en-US", currency="USD")
    assert "$39.74" in usd
    assert "MX$" not in usd
    assert "Amounts in US dollars (USD)." in usd
    _, _, yen = _render(WORKED_EXAMPLE, "en-US", currency="JPY")
    assert "¥39.74" in yen  # the customer's cents are shown, not rounded away


@pytest.mark.parametrize(
    ("email", "phone", "es", "en"),
    [
        (
            "ayuda@stori.mx",
            "55 1234 5678",
            "¿Dudas? Escríbenos a ayuda@stori.mx o llámanos al 55 1234 5678.",
            "Questions? Write to ayuda@stori.mx or call 55 1234 5678.",
        ),
        ("ayuda@stori.mx", "", "¿Dudas? Escríbenos a ayuda@stori.mx.", "Write to ayuda@stori.mx."),
        ("", "800 000 0000", "¿Dudas? Llámanos al 800 000 0000.", "Questions? Call 800 000 0000."),
    ],
)
def test_support_contact_is_configurable(email: str, phone: str, es: str, en: str) -> None:
    """SUPPORT_EMAIL / SUPPORT_PHONE appear in the footer of both parts, in the language."""
    for locale, expected in (("es-MX", es), ("en-US", en)):
        _, html, text = _render(WORKED_EXAMPLE, locale, support_email=email, support_phone=phone)
        assert expected in html
        assert expected in text


def test_operator_template_gets_formatted_and_raw_values() -> None:
    """An S3 template sees localized strings, raw Decimals, the period, the overall row."""
    template = (
        '<html lang="{{ lang }}"><body>'
        "{{ balance }}|{{ balance_value }}|{{ currency }}|{{ period }}|"
        "{% for m in months %}{{ m.name }}={{ m.month }}:{{ m.average_debit_value }};{% endfor %}"
        "{{ overall.label }}:{{ overall.transaction_count }}:{{ overall.average_credit_value }}|"
        "{{ (balance_value * 2) }}|{{ messages.security_note[:5] }}|{{ support_email }}"
        "</body></html>"
    )
    rendered = render_summary_email(
        WORKED_EXAMPLE,
        User("A", "a@example.com", "A", "es-MX"),
        template,
        presentation=Presentation(support_email="ayuda@stori.mx"),
    )
    assert rendered.template_source == "custom"
    assert re.sub(r"<[^>]+>", "", rendered.html) == (
        f"$39.74|39.74|MXN|julio{RANGE}agosto|Julio=7:-10.30;Agosto=8:-20.46;"
        "Todo el periodo:4:35.25|79.48|Stori|ayuda@stori.mx"
    )
    assert '<html lang="es-MX">' in rendered.html


def test_a_summary_without_months_has_no_period() -> None:
    """An event may carry no months: the subject and body then name no period."""
    subject, html, text = _render(AccountSummary("A", ()), "es-MX")
    assert subject == "Tu resumen de cuenta Stori"
    assert "Periodo" not in html
    assert "Periodo" not in text
    assert "Saldo total: $0.00" in text


def test_an_explicit_subject_overrides_the_localized_one() -> None:
    """EMAIL_SUBJECT, when set, is used for every recipient."""
    rendered = render_summary_email(
        WORKED_EXAMPLE, User("A", "a@example.com", "A", "es-MX"), subject="Resumen"
    )
    assert rendered.subject == "Resumen"


@pytest.mark.parametrize(
    ("tag", "canonical"),
    [("es-MX", "es-MX"), ("es_mx", "es-MX"), ("EN-us", "en-US"), ("en-GB", "en-GB"), ("es", "es")],
)
def test_locale_tags_are_normalized(tag: str, canonical: str) -> None:
    """Tags are accepted in any case, with - or _, and stored in BCP 47 form."""
    assert locale_tag(tag) == canonical


@pytest.mark.parametrize("tag", ["fr-FR", "de", "zz-ZZ", "", "es MX", "x" * 40, "../../etc"])
def test_unsupported_locales_are_rejected(tag: str) -> None:
    """Only locales Babel knows in a language the email is written in (es, en)."""
    with pytest.raises(UnsupportedLocaleError):
        locale_tag(tag)


def test_presentation_validates_locale_and_currency() -> None:
    """Presentation.create refuses an unknown currency and an unsupported default locale."""
    assert Presentation.create("es_mx", "mxn") == Presentation("es-MX", "MXN")
    with pytest.raises(UnsupportedCurrencyError):
        Presentation.create(currency="PESOS")
    with pytest.raises(UnsupportedLocaleError):
        Presentation.create(default_locale="pt-BR")


BASE_ENV = {
    "USERS_TABLE": "u",
    "TEMPLATES_BUCKET": "t",
    "SENDER_EMAIL": "s@example.com",
    "IDEMPOTENCY_TABLE": "i",
}


def test_email_settings_defaults_are_mexican() -> None:
    """Without the variables: es-MX, MXN, the localized subject, no support contact."""
    settings = EmailSettings.from_env(BASE_ENV)
    assert (settings.default_locale, settings.currency) == ("es-MX", "MXN")
    assert settings.email_subject is None
    assert settings.presentation == Presentation("es-MX", "MXN", "", "")


def test_email_settings_read_the_presentation_variables() -> None:
    """DEFAULT_LOCALE, CURRENCY, SUPPORT_EMAIL, SUPPORT_PHONE are read and normalized."""
    settings = EmailSettings.from_env(
        {
            **BASE_ENV,
            "DEFAULT_LOCALE": "en_us",
            "CURRENCY": "usd",
            "SUPPORT_EMAIL": "help@Stori.example",
            "SUPPORT_PHONE": "+52 55  1234 5678",
        }
    )
    assert settings.presentation == Presentation(
        "en-US", "USD", "help@stori.example", "+52 55 1234 5678"
    )


def test_email_settings_report_every_bad_presentation_variable() -> None:
    """A bad locale, currency, support address and phone are all reported at once."""
    with pytest.raises(ConfigurationError) as caught:
        EmailSettings.from_env(
            {
                **BASE_ENV,
                "DEFAULT_LOCALE": "fr-FR",
                "CURRENCY": "PESOS",
                "SUPPORT_EMAIL": "not an address",
                "SUPPORT_PHONE": "call me <script>",
                "EMAIL_SUBJECT": "a\nb",
            }
        )
    problems = " ".join(caught.value.problems)
    assert len(caught.value.problems) == 5
    for name in ("DEFAULT_LOCALE", "CURRENCY", "SUPPORT_EMAIL", "SUPPORT_PHONE", "EMAIL_SUBJECT"):
        assert name in problems


def test_seed_user_stores_a_canonical_locale() -> None:
    """`users put --locale es_mx` writes Locale es-MX; no --locale writes no attribute."""
    user = SeedUser.create("AccountId123", "ana@example.com", "Ana", "es_mx")
    assert user.to_item()["Locale"] == {"S": "es-MX"}
    assert "Locale" not in SeedUser.create("A1", "a@example.com", "A").to_item()
    with pytest.raises(InvalidSeedInputError, match="locale"):
        SeedUser.create("A1", "a@example.com", "A", "klingon")
