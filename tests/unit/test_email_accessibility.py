"""The HTML part is readable by everyone: WCAG AA contrast in every scheme, lang, whole numbers.

The contrast check reads the colours from the rendered, CSS-inlined HTML the customer gets:
each text node's colour and background are the nearest ``color`` / ``background-color`` of
its element or an ancestor in the ``style`` attributes (light mode); dark mode applies the
``@media (prefers-color-scheme: dark)`` rules kept in the ``<style>`` block on top, by class,
in source order; "inverted" models a client that inverts the light colours itself (each RGB
channel ``255 - c``). Image ``alt`` text counts as text (shown when images are blocked).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest

from stori_pipeline.email import Presentation, User, render_summary_email
from stori_pipeline.localization import Figure
from stori_pipeline.summary import AccountSummary, Flow, MonthSummary
from tests.spec_example import spec_example_json

AA = 4.5
LOCALES = ("es-MX", "en-US")
SCHEMES = ("light", "dark", "inverted")
_VOID = frozenset({"area", "br", "col", "hr", "img", "input", "link", "meta", "wbr", "source"})
_DARK_BLOCK = re.compile(r"@media\s*\(prefers-color-scheme:\s*dark\)\s*\{(.*?)\}\s*\}", re.DOTALL)
_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")

WORKED_EXAMPLE = AccountSummary.from_json(spec_example_json())
# Every styled state: a negative balance, months with and without credits or debits, a year.
EVERY_STATE = AccountSummary(
    "ACC-0042",
    (
        MonthSummary(2024, 11, 1, Flow(0, 0), Flow(1, -500_00)),
        MonthSummary(2024, 12, 2, Flow(1, 120_00), Flow(1, -999_999_999_999_99)),
        MonthSummary(2025, 1, 1, Flow(1, 7), Flow(0, 0)),
    ),
)


def luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG 2.x relative luminance."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """WCAG contrast ratio, 1 to 21."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def parse_colour(text: str) -> tuple[int, int, int]:
    """``#rgb`` / ``#rrggbb`` (the only forms the template may use, so nothing is guessed)."""
    value = text.strip().removesuffix("!important").strip().lower()
    if re.fullmatch(r"#[0-9a-f]{3}", value):
        value = "#" + "".join(c * 2 for c in value[1:])
    assert re.fullmatch(r"#[0-9a-f]{6}", value), f"unsupported colour {text!r}"
    return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))


def declarations(style: str) -> dict[str, str]:
    """``color`` and ``background-color`` of a declaration list (``background`` too)."""
    found: dict[str, str] = {}
    for declaration in style.split(";"):
        name, _, value = declaration.partition(":")
        name = name.strip().lower()
        if name == "background":
            name = "background-color"
        if name in {"color", "background-color"} and value.strip():
            found[name] = value.strip()
    return found


def dark_rules(html: str) -> list[tuple[str, dict[str, str]]]:
    """(class, declarations) of the prefers-color-scheme: dark block, in source order."""
    block = _DARK_BLOCK.search(html)
    assert block is not None, "no @media (prefers-color-scheme: dark) block survived inlining"
    rules = []
    for selectors, body in _RULE.findall(block.group(1)):
        for selector in selectors.split(","):
            name = selector.strip()
            assert re.fullmatch(r"\.[\w-]+", name), f"the check reads only .class rules: {name}"
            rules.append((name[1:], declarations(body)))
    return rules


@dataclass
class _Element:
    tag: str
    classes: tuple[str, ...]
    style: dict[str, str]
    hidden: bool = False


@dataclass
class TextColours(HTMLParser):
    """Every visible text with the colour and background it is drawn in."""

    scheme: str
    rules: list[tuple[str, dict[str, str]]]
    found: list[tuple[str, tuple[int, int, int], tuple[int, int, int]]] = field(
        default_factory=list
    )
    stack: list[_Element] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def _element(self, tag: str, attrs: list[tuple[str, str | None]]) -> _Element:
        attributes = dict(attrs)
        raw_style = attributes.get("style") or ""
        style = declarations(raw_style)
        classes = tuple((attributes.get("class") or "").split())
        if self.scheme == "dark":
            for name, rule in self.rules:
                if name in classes:
                    style.update(rule)
        hidden = "display:none" in raw_style.replace(" ", "") or tag in {"style", "title", "head"}
        return _Element(tag, classes, style, hidden)

    def _computed(self, name: str, default: str) -> tuple[int, int, int]:
        for element in reversed(self.stack):
            if name in element.style:
                value = parse_colour(element.style[name])
                break
        else:
            value = parse_colour(default)
        if self.scheme == "inverted":
            value = (255 - value[0], 255 - value[1], 255 - value[2])
        return value

    def _text(self, text: str) -> None:
        if text.strip() and not any(e.hidden for e in self.stack):
            colours = (
                self._computed("color", "#000000"),
                self._computed("background-color", "#fff"),
            )
            self.found.append((text.strip(), *colours))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Enter an element (void ones are not pushed; an image's alt is text)."""
        element = self._element(tag, attrs)
        if tag in _VOID:
            if tag == "img":
                self.stack.append(element)
                self._text(dict(attrs).get("alt") or "")
                self.stack.pop()
            return
        self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        """Leave the element (and any left unclosed inside it)."""
        if tag in _VOID:
            return
        while self.stack:
            if self.stack.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        """A text node."""
        self._text(data)


def text_colours(
    html: str, scheme: str
) -> list[tuple[str, tuple[int, int, int], tuple[int, int, int]]]:
    """(text, colour, background) of every visible text in ``html`` under ``scheme``."""
    parser = TextColours(scheme, dark_rules(html) if scheme == "dark" else [])
    parser.feed(html)
    parser.close()
    return parser.found


def failures(html: str, scheme: str) -> list[str]:
    """Each text below AA, with its colours and ratio."""
    return [
        f"{text[:40]!r}: {colour} on {background} = {contrast(colour, background):.2f}"
        for text, colour, background in text_colours(html, scheme)
        if contrast(colour, background) < AA
    ]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("summary", [WORKED_EXAMPLE, EVERY_STATE], ids=["worked", "every-state"])
def test_every_text_meets_wcag_aa(summary: AccountSummary, locale: str, scheme: str) -> None:
    """Every text/background pair of the inlined HTML is at least 4.5:1 in every scheme."""
    presentation = Presentation(support_email="ayuda@stori.example", support_phone="55 1234 5678")
    rendered = render_summary_email(
        summary, User(summary.account_id, "a@example.com", "Ana", locale), presentation=presentation
    )
    texts = text_colours(rendered.html, scheme)
    assert len(texts) >= 30  # the whole email was read, not an empty shell
    seen = " ".join(text for text, _, _ in texts)
    for part in ("Stori", "$", "2024" if summary is EVERY_STATE else "Ana", "Stori ·"):
        assert part in seen
    assert failures(rendered.html, scheme) == []


def test_the_contrast_check_catches_the_old_greys() -> None:
    """The old footer grey on the page colour (3.97:1) and a dark rule's grey are flagged."""
    html = (
        "<html><head><style>@media (prefers-color-scheme: dark) { .f { color: #333333 !important; "
        "background-color: #000000 !important; } }</style></head><body>"
        '<table style="background-color: #eef3f4;"><tr><td class="f" style="color: #6b7a81;">'
        "Stori</td><td style='color: #1c2b33;'>fine</td></tr></table>"
        '<p style="color: #fff; background-color: #fff;"><img alt="logo" src="x.png"></p>'
        "</body></html>"
    )
    light = failures(html, "light")
    assert len(light) == 2
    assert "3.97" in light[0]
    assert "'logo'" in light[1]
    assert len(failures(html, "dark")) == 2  # #333 on black, and the logo's alt text still
    assert contrast((255, 255, 255), (0, 0, 0)) == pytest.approx(21)


@pytest.mark.parametrize("locale", LOCALES)
def test_lang_attribute_is_the_recipients_locale(locale: str) -> None:
    """<html lang> is the locale the email is written in (screen readers pick the voice)."""
    rendered = render_summary_email(WORKED_EXAMPLE, User("A", "a@example.com", "A", locale))
    found = re.search(r'<html[^>]*\blang="([^"]+)"', rendered.html)
    assert found is not None
    assert found.group(1) == locale


@pytest.mark.parametrize(
    ("figure", "html"),
    [
        ("$39.74", "[$39.74]"),
        ("-$999,999,999,999,999.99", "[-$999,]|[999,]|[999,]|[999,]|[999.99]"),
        ("1.234.567,89 €", "[1.]|[234.]|[567,89 €]"),
        ("12,345", "[12,]|[345]"),
        ("—", "[—]"),
        ("<b>1,000</b>", "[&lt;b&gt;1,]|[000&lt;/b&gt;]"),
    ],
)
def test_figures_wrap_only_between_digit_groups(figure: str, html: str) -> None:
    """In HTML an amount is unbreakable runs ending at a group separator, <wbr> between them."""
    markup = Figure(figure).__html__()
    shown = markup.replace('<span style="white-space:nowrap">', "[").replace("</span>", "]")
    assert shown.replace("<wbr>", "|") == html
    assert str(Figure(figure)) == figure  # the text part gets the plain string


def test_no_amount_in_the_email_can_break_inside_a_group() -> None:
    """Long amounts are nowrap runs split only after a comma; no CSS rule breaks words."""
    rendered = render_summary_email(EVERY_STATE, User("A", "a@example.com", "A", "es-MX"))
    assert "overflow-wrap: anywhere" not in rendered.html
    assert "break-all" not in rendered.html
    sequences = re.findall(
        r'(?:<span style="white-space:nowrap">[^<]*</span>(?:<wbr>)?)+', rendered.html
    )
    long_amounts = [s for s in sequences if s.count(",") >= 2]
    assert len(long_amounts) >= 3  # December's and the overall average debit, the balance
    for sequence in long_amounts:
        runs = re.findall(r'nowrap">([^<]*)</span>', sequence)
        assert re.fullmatch(r"-?\$\d{1,3}(?:,\d{3})*\.\d{2}", "".join(runs)), runs
        assert all(run.endswith(",") for run in runs[:-1]), runs
        assert sequence.count("<wbr>") == len(runs) - 1
