"""The summary email rendered without AWS (SPEC §6): content, escaping, sandbox, MIME safety."""

from __future__ import annotations

import email
import email.policy
import json
import re
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from stori_pipeline.email import (
    InvalidEmailError,
    InvalidSummaryEventError,
    TemplateProblem,
    User,
    build_mime,
    format_money,
    normalize_email,
    parse_sender,
    parse_summary_detail,
    render_summary_email,
)
from stori_pipeline.stream import file_chunks, summarize_stream
from stori_pipeline.summary import AccountSummary, Flow, MonthSummary
from tests.spec_example import spec_example_json

SUBJECT = "Your Stori account summary"
MONEY = re.compile(r"-?(?:MX)?\$\d{1,3}(?:,\d{3})*\.\d{2}")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_INLINE = frozenset({"span", "wbr", "b", "strong", "i", "em", "a"})


class _VisibleText(HTMLParser):
    """Collects the text a reader sees (skips <style>, <title> and the hidden preheader)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _INLINE:  # a block boundary separates words; a <span> or <wbr> does not
            self.parts.append(" ")
        style = dict(attrs).get("style") or ""
        if tag in {"style", "title"} or "display:none" in style.replace(" ", ""):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if self._skip and tag in {"style", "title", "div"}:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    """The words a reader sees in ``html``, white space collapsed."""
    parser = _VisibleText()
    parser.feed(html)
    return " ".join("".join(parser.parts).split())


def cells(html: str) -> list[list[str]]:
    """The text of each <td> of each <tr> of the month table (rows after its header)."""
    start = html.index('class="months"')
    table = html[start : html.index("</table>", start)]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, flags=re.DOTALL)
    return [
        [
            re.sub(r"<[^>]+>", "", c).strip()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)
        ]
        for row in rows
        if "<td" in row
    ]


def month(
    year: int | None, number: int, credit: tuple[int, int], debit: tuple[int, int]
) -> MonthSummary:
    """A month from (count, cents) of credits and of debits."""
    return MonthSummary(year, number, credit[0] + debit[0], Flow(*credit), Flow(*debit))


@pytest.fixture
async def worked_example(example_csv: Path) -> AccountSummary:
    """The challenge's example summarized by the real core (not a hand-copied summary)."""
    result = await summarize_stream(file_chunks(example_csv), account="AccountId123")
    (summary,) = result.accounts
    return summary


@pytest.fixture
def ana() -> User:
    """A user with a non-ASCII name who reads English (Users.Locale en-US)."""
    return User("AccountId123", "ana@example.com", "Ana García", "en-US")


async def test_worked_example_numbers_in_both_parts(
    worked_example: AccountSummary, ana: User
) -> None:
    """SPEC §3's example shows balance 39.74, July/August with 2 tx, averages -15.38 / 35.25."""
    rendered = render_summary_email(worked_example, ana, subject=SUBJECT)
    html_text = visible_text(rendered.html)
    for part in (html_text, rendered.text):
        for figure in ("MX$39.74", "-MX$15.38", "MX$35.25", "July", "August"):
            assert figure in part
    assert cells(rendered.html) == [
        ["July", "2", "MX$60.50", "-MX$10.30"],
        ["August", "2", "MX$10.00", "-MX$20.46"],
        ["Whole period", "4", "MX$35.25", "-MX$15.38"],
    ]
    assert re.search(r"July\s+2\s+MX\$60\.50\s+-MX\$10\.30", rendered.text)
    assert re.search(r"August\s+2\s+MX\$10\.00\s+-MX\$20\.46", rendered.text)


async def test_text_part_mirrors_html_numbers(worked_example: AccountSummary, ana: User) -> None:
    """Every money figure a reader sees in the HTML is in the plain text, and vice versa."""
    rendered = render_summary_email(worked_example, ana, subject=SUBJECT)
    assert sorted(MONEY.findall(visible_text(rendered.html))) == sorted(
        MONEY.findall(rendered.text)
    )


def test_every_field_appears_with_thousands_separators() -> None:
    """Name, account hint, balance, counts and averages appear, formatted like -MX$1,234.50."""
    summary = AccountSummary(
        "ACC-9876",
        (month(2024, 1, (2, 250_000_00), (3, -123_450)), month(2024, 2, (1, 7), (0, 0))),
    )
    user = User("ACC-9876", "bo@example.com", "Bo", "en-US")
    rendered = render_summary_email(summary, user, subject=SUBJECT)
    seen = visible_text(rendered.html)
    expected = [
        "Hi Bo,",
        "9876",  # account hint: last four characters
        "MX$248,765.57",  # balance = 250,000.00 + 0.07 - 1,234.50
        "MX$83,333.36",  # average credit 250,000.07 / 3, half-up
        "-MX$411.50",  # average debit -1,234.50 / 3
        "3 credits",
        "3 debits",
        "MX$125,000.00",  # January's average credit
        "MX$0.07",  # February's average credit
    ]
    for figure in expected:
        assert figure in seen, figure
        assert figure in rendered.text, figure
    assert "6 transactions in this period" in seen
    assert "6 transactions in this period" in rendered.text
    assert rendered.subject == SUBJECT


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (0, "0.00"),
        (-5, "-0.05"),
        (123_450, "1,234.50"),
        (-123_450, "-1,234.50"),
        (123_456_789_01, "123,456,789.01"),
        (99, "0.99"),
    ],
)
def test_money_format(cents: int, text: str) -> None:
    """Money has two decimals and a thousands separator, and never shows -0.00."""
    assert format_money(cents) == text


def test_month_names_years_and_dashes() -> None:
    """English month names for en-US, the year only when known, an em dash for no flow."""
    summary = AccountSummary(
        "A1",
        (
            month(None, 3, (1, 500), (0, 0)),
            month(2023, 12, (0, 0), (2, -300)),
            month(2024, 9, (0, 0), (0, 0)),
        ),
    )
    user = User("A1", "a@example.com", "A", "en-US")
    rendered = render_summary_email(summary, user, subject=SUBJECT)
    assert cells(rendered.html) == [
        ["March", "1", "MX$5.00", "—"],
        ["December 2023", "2", "—", "-MX$1.50"],
        ["September 2024", "0", "—", "—"],
        ["Whole period", "3", "MX$5.00", "-MX$1.50"],
    ]
    assert re.search(r"March\s+1\s+MX\$5\.00\s+—", rendered.text)
    assert re.search(r"December 2023\s+2\s+—\s+-MX\$1\.50", rendered.text)


def test_html_in_name_is_escaped(worked_example_sync: AccountSummary) -> None:
    """A <script> in the user's name is shown as text, never as markup."""
    user = User("AccountId123", "x@example.com", "<script>alert('x')</script> & <b>Bo</b>")
    rendered = render_summary_email(worked_example_sync, user, subject=SUBJECT)
    assert "<script>" not in rendered.html
    assert "<b>Bo</b>" not in rendered.html
    assert "&lt;script&gt;" in rendered.html
    assert "<script>alert('x')</script> & <b>Bo</b>" in visible_text(rendered.html)


@pytest.fixture
def worked_example_sync() -> AccountSummary:
    """SPEC §3's JSON of the worked example (for tests that need no file reading)."""
    return AccountSummary.from_json(spec_example_json())


def test_logo_is_inline_cid_image_and_no_remote_urls(worked_example_sync: AccountSummary) -> None:
    """The logo is a PNG attached inline and referenced by cid:; nothing is loaded remotely."""
    rendered = render_summary_email(
        worked_example_sync, User("A", "a@example.com", "A"), subject=SUBJECT
    )
    (logo,) = rendered.inline_images
    assert logo.content.startswith(PNG_MAGIC)
    assert len(logo.content) < 20_000
    assert f'src="cid:{logo.cid}"' in rendered.html
    assert not re.search(r"""(src|href|background)\s*=\s*["']?\s*(https?:)?//""", rendered.html)
    assert "url(" not in rendered.html


def test_css_is_inlined_and_media_queries_kept(worked_example_sync: AccountSummary) -> None:
    """Class rules become style="" attributes; only the responsive @media block stays."""
    rendered = render_summary_email(
        worked_example_sync, User("A", "a@example.com", "A"), subject=SUBJECT
    )
    greeting = re.search(r"<h1[^>]*>", rendered.html)
    assert greeting is not None
    assert "font-size: 24px" in greeting.group(0)
    styles = re.findall(r"<style[^>]*>(.*?)</style>", rendered.html, flags=re.DOTALL)
    assert len(styles) == 1
    assert "@media" in styles[0]
    assert "max-width: 600px" in rendered.html


def _parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_mime_structure_has_text_html_and_logo(worked_example_sync: AccountSummary) -> None:
    """alternative(text/plain, related(text/html, inline image/png with the HTML's CID))."""
    rendered = render_summary_email(
        worked_example_sync, User("A", "ana@example.com", "Ana"), subject=SUBJECT
    )
    raw = build_mime(
        rendered,
        sender=parse_sender("Stori <no-reply@stori.example>"),
        recipient_email="ana@example.com",
        recipient_name="Ana",
    )
    message = _parse(raw)
    assert [p.get_content_type() for p in message.walk()] == [
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
    ]
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert text_part is not None
    assert html_part is not None
    assert "39.74" in text_part.get_content()
    assert "39.74" in html_part.get_content()
    image = next(p for p in message.walk() if p.get_content_type() == "image/png")
    cid = str(image["Content-ID"]).strip("<>")
    assert f"cid:{cid}" in html_part.get_content()
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == rendered.inline_images[0].content
    assert str(message["Subject"]) == SUBJECT
    assert raw.isascii()


@pytest.mark.parametrize(
    "name",
    [
        "Eve\r\nBcc: victim@example.com",
        "Eve\nSubject: you won",
        "Eve\u2028Bcc: victim@example.com",
        "Eve\u202e\u0000\x1b[31m",
        '"Eve" <attacker@example.com>, ',
    ],
)
def test_header_injection_through_name_is_neutralized(
    worked_example_sync: AccountSummary, name: str
) -> None:
    """Names with CR/LF, separators or quotes/addresses cannot add headers or recipients."""
    user = User("A", "ana@example.com", name)
    rendered = render_summary_email(
        worked_example_sync, user, subject="Summary\r\nBcc: victim@example.com"
    )
    raw = build_mime(
        rendered,
        sender=parse_sender("no-reply@stori.example"),
        recipient_email="ana@example.com",
        recipient_name=name,
    )
    message = _parse(raw)
    header_block = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = [line.split(":", 1)[0] for line in header_block.split("\r\n") if line[:1] != " "]
    assert sorted(names) == sorted(
        ["Subject", "From", "To", "Date", "MIME-Version", "Content-Type"]
    )
    assert message["Bcc"] is None
    (to,) = message["To"].addresses
    assert to.addr_spec == "ana@example.com"
    assert "\n" not in to.display_name
    assert "\u202e" not in to.display_name
    assert str(message["Subject"]) == "Summary Bcc: victim@example.com"


def test_non_ascii_display_name_is_rfc2047_encoded(worked_example_sync: AccountSummary) -> None:
    """A non-ASCII name is encoded in the To header and decodes back unchanged."""
    rendered = render_summary_email(
        worked_example_sync, User("A", "a@example.com", "Zoë Ñúñez 李", "en-US"), subject=SUBJECT
    )
    raw = build_mime(
        rendered,
        sender=parse_sender("Stori <no-reply@stori.example>"),
        recipient_email="zoe@example.com",
        recipient_name="Zoë Ñúñez 李",
    )
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n", 1)[0]
    assert raw.isascii()
    message = _parse(raw)
    (to,) = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Zoë Ñúñez 李", "zoe@example.com")
    for kind in ("plain", "html"):
        body = message.get_body(preferencelist=(kind,))
        assert body is not None
        assert "Hi Zoë Ñúñez 李," in body.get_content()


class _Problems:
    def __init__(self) -> None:
        self.seen: list[TemplateProblem] = []

    def __call__(self, problem: TemplateProblem) -> None:
        self.seen.append(problem)


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "security_error"),
        ("{{ cycler.__init__.__globals__.os }}", "security_error"),
        ("{% for x in %}", "syntax_error"),
        ("{{ no_such_variable }}", "undefined_variable"),
        ("{{ 'a' * 1000000000 }}", "render_error"),
        ("{{ 10 ** 1000000 }}", "render_error"),
        ("{{ 1 / 0 }}", "render_error"),
    ],
)
def test_unsafe_or_broken_template_falls_back(
    worked_example_sync: AccountSummary, template: str, reason: str
) -> None:
    """A template that reaches for internals, is broken, or is a resource bomb -> packaged."""
    problems = _Problems()
    rendered = render_summary_email(
        worked_example_sync,
        User("A", "a@example.com", "Ana"),
        template,
        subject=SUBJECT,
        template_label="s3://bucket/email/summary.html.j2",
        on_template_problem=problems,
    )
    assert rendered.template_source == "packaged"
    assert "Mes por mes" in rendered.html  # the packaged template, in the default es-MX
    assert "$39.74" in rendered.html
    assert "subclasses" not in rendered.html
    (problem,) = problems.seen
    assert (problem.source, problem.reason) == ("s3://bucket/email/summary.html.j2", reason)


def test_custom_template_is_used_and_autoescaped(worked_example_sync: AccountSummary) -> None:
    """A valid operator template renders with the documented context, escaping data."""
    template = (
        "<html><head><style>.b{color:#123456}</style></head>"
        '<body><p class="b">{{ name }}: {{ balance }}</p>'
        "{% for m in months %}<i>{{ m.label }}={{ m.average_debit }}</i>{% endfor %}</body></html>"
    )
    rendered = render_summary_email(
        worked_example_sync,
        User("A", "a@example.com", "<Ana>", "en-US"),
        template,
        subject=SUBJECT,
        template_label="custom-x",
    )
    assert rendered.template_source == "custom-x"
    nowrap = '<span style="white-space:nowrap">'
    assert f'<p class="b" style="color: #123456;">&lt;Ana&gt;: {nowrap}MX$39.74</span></p>' in (
        rendered.html
    )
    assert f"<i>July={nowrap}-MX$10.30</span></i><i>August={nowrap}-MX$20.46</span></i>" in (
        rendered.html
    )
    assert "39.74" in rendered.text  # the text part is always the packaged one


def test_summary_detail_validation() -> None:
    """A detail without SPEC §5's fields is a permanent InvalidSummaryEventError."""
    good = {
        "schemaVersion": 1,
        "importId": "a" * 32,
        "summary": {"accountId": "A1", "months": []},
    }
    assert parse_summary_detail(good).import_id == "a" * 32
    for bad in (
        {**good, "schemaVersion": 2},
        {**good, "importId": ""},
        {**good, "summary": None},
        {**good, "summary": {"accountId": "A1", "months": [{"month": 7}]}},
        {**good, "summary": {"accountId": "", "months": []}},
    ):
        with pytest.raises(InvalidSummaryEventError):
            parse_summary_detail(bad)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("  ana@example.com ", "ana@example.com"),
        ("Ana@EXAMPLE.com", "Ana@example.com"),
        ("jose@bücher.example", "jose@xn--bcher-kva.example"),
    ],
)
def test_valid_addresses_are_normalized(raw: str, normalized: str) -> None:
    """Addresses are trimmed, domains lower-cased and IDNA-encoded for SES."""
    assert normalize_email(raw, account_id="A") == normalized


@pytest.mark.parametrize(
    "raw", ["", "not-an-email", "a@b", "ana@example.com\r\nBcc: x@y.com", "josé@example.com"]
)
def test_invalid_addresses_are_rejected(raw: str) -> None:
    """Empty, malformed, multi-line and SMTPUTF8-only addresses are InvalidEmailError."""
    with pytest.raises(InvalidEmailError) as info:
        normalize_email(raw, account_id="A")
    assert info.value.account_id == "A"


@pytest.fixture
def sample_event() -> dict[str, object]:
    """tests/events/transactions_summarized.json."""
    path = Path(__file__).resolve().parent.parent / "events" / "transactions_summarized.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))


async def test_sample_event_carries_the_cores_worked_example(
    worked_example: AccountSummary, sample_event: dict[str, Any]
) -> None:
    """tests/events/transactions_summarized.json holds exactly what the core computes."""
    event = sample_event
    assert event["detail-type"] == "Transactions Summarized"
    assert event["source"] == "stori.pipeline"
    assert event["detail"]["summary"] == worked_example.to_json()
    assert parse_summary_detail(event["detail"]).summary == worked_example
