"""The HTML part in a real browser (headless Chromium): no horizontal overflow, PNGs kept.

Headless Chromium will not size a window below 500 CSS pixels, so each width is emulated by
an iframe exactly that wide (its own viewport: media queries and ``innerWidth`` follow it).
The harness reads the framed document's ``scrollWidth`` after load and writes it into the
page, which ``--dump-dom`` prints; it also reads every text's computed colour and the
background it sits on, so the dark scheme's contrast is checked as Chromium draws it. Each
case runs in both locales and both colour schemes (``prefers-color-scheme`` set through
Blink's ``preferredColorScheme``). Screenshots go to ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from stori_pipeline.email import User, html_with_embedded_images, render_summary_email
from stori_pipeline.summary import AccountSummary, Flow, MonthSummary
from tests.spec_example import spec_example_json
from tests.unit.test_email_accessibility import AA, contrast

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTHS = (375, 1280)
LOCALES = ("es-MX", "en-US")
SCHEMES = {"light": 1, "dark": 0}  # Blink's preferredColorScheme values
FRAME_HEIGHT = 2200

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
    ),
]

WORKED_EXAMPLE = AccountSummary.from_json(spec_example_json())
# Worst realistic case: every month of a year, 15-digit amounts, a long unbroken name.
STRESS = AccountSummary(
    "ACC-STRESS-0001",
    tuple(
        MonthSummary(
            2024,
            n,
            999_999,
            Flow(0, 0) if n % 4 == 0 else Flow(3, 999_999_999_999_99),
            Flow(0, 0) if n % 3 == 0 else Flow(1, -888_888_888_888_88),
        )
        for n in range(1, 13)
    ),
)
CASES = {
    "worked-example": (WORKED_EXAMPLE, User("AccountId123", "ana@example.com", "Ana García")),
    "stress": (STRESS, User("ACC-STRESS-0001", "x@example.com", "Maximiliano" * 6 + " Ñúñez")),
}


def _chromium(width: int, scheme: str, *args: str, profile: Path) -> str:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={max(width, 500)},{FRAME_HEIGHT}",
        f"--blink-settings=preferredColorScheme={SCHEMES[scheme]}",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


# For each element with its own text: [text, colour, the first opaque background up the tree].
_COLOURS = (
    "const texts=[];for(const e of d.body.querySelectorAll('*')){"
    "const own=[...e.childNodes].filter(n=>n.nodeType===3).map(n=>n.data).join('').trim();"
    "if(!own||e.closest('[style*=\\'display:none\\']'))continue;"
    "let b=e,bg='';while(b){const c=getComputedStyle(b).backgroundColor;"
    "if(c&&c!=='transparent'&&!c.endsWith(', 0)')){bg=c;break}b=b.parentElement}"
    "texts.push([own.slice(0,40),getComputedStyle(e).color,bg||'rgb(255, 255, 255)'])}"
)


def _harness(email_html: str, width: int) -> str:
    measure = (
        "const d=this.contentDocument;"
        + _COLOURS
        + ";document.body.setAttribute('data-check',JSON.stringify("
        "{scrollWidth:d.documentElement.scrollWidth,innerWidth:this.contentWindow.innerWidth,"
        "dark:this.contentWindow.matchMedia('(prefers-color-scheme: dark)').matches,texts}))"
    )
    return (
        "<!DOCTYPE html><html><head><style>html,body{margin:0;background:#cfd6d9}"
        "iframe{border:0;display:block}</style></head><body>"
        f'<iframe width="{width}" height="{FRAME_HEIGHT}" '
        f'srcdoc="{html.escape(email_html, quote=True)}" onload="{html.escape(measure)}"></iframe>'
        "</body></html>"
    )


def _rgb(css: str) -> tuple[int, int, int]:
    r, g, b = (int(float(v)) for v in re.findall(r"[\d.]+", css)[:3])
    return (r, g, b)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_html_part_fits_and_is_readable(
    case: str, width: int, locale: str, scheme: str, tmp_path: Path
) -> None:
    """At a phone and a desktop width, in both locales and schemes: no overflow, AA contrast."""
    summary, user = CASES[case]
    rendered = render_summary_email(summary, dataclasses.replace(user, locale=locale))
    page = tmp_path / "harness.html"
    page.write_text(_harness(html_with_embedded_images(rendered), width), encoding="utf-8")

    # The screenshot first, so a failing layout leaves a picture of itself behind.
    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / f"email-{case}-{locale}-{scheme}-{width}.png"
    png.unlink(missing_ok=True)
    _chromium(width, scheme, f"--screenshot={png}", page.as_uri(), profile=tmp_path / "png")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    dom = _chromium(width, scheme, "--dump-dom", page.as_uri(), profile=tmp_path / "dom")
    found = re.search(r'data-check="([^"]*)"', dom)
    assert found is not None, "the measuring script did not run"
    check = json.loads(html.unescape(found.group(1)))
    assert check["innerWidth"] == width
    assert check["dark"] is (scheme == "dark")
    assert check["scrollWidth"] <= check["innerWidth"], check["scrollWidth"]
    assert len(check["texts"]) >= 25
    low = [
        (text, colour, background)
        for text, colour, background in check["texts"]
        if contrast(_rgb(colour), _rgb(background)) < AA
    ]
    assert low == []
