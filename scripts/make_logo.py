# /// script
# requires-python = ">=3.11"
# dependencies = ["pillow>=11"]
# ///
"""Rebuild the Stori logo shipped inside the package (a one-off; Pillow is NOT a runtime dep).

    .tools/uv/bin/uv run --script scripts/make_logo.py

Draws a deep-teal rounded tile (the email header's colour, so it blends in there and still
reads on white) with a white lowercase "stori" wordmark whose "i" dot is Stori's mint accent.
It is drawn at 4x and downsampled for smooth edges, then saved at 2x of the 136x48 CSS pixels
the template displays, so it stays sharp on high-density phone screens. Email clients do not
render SVG reliably, which is why a PNG is what gets attached. The font is DejaVu Sans Bold
(Debian's fonts-dejavu-core), so the output is reproducible on the project's build image.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parent.parent / "src/stori_pipeline/email/assets/stori-logo.png"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
TEAL = (11, 59, 69, 255)  # #0b3b45
MINT = (61, 219, 179, 255)  # #3ddbb3
WHITE = (255, 255, 255, 255)
WIDTH, HEIGHT = 272, 96  # saved size (2x)
SUPERSAMPLE = 2  # drawn at 2x of the saved size, i.e. 4x of the CSS size


def main() -> None:
    """Draw, downsample, and write the PNG."""
    w, h = WIDTH * SUPERSAMPLE, HEIGHT * SUPERSAMPLE
    image = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, w - 1, h - 1), radius=44, fill=TEAL)

    font = ImageFont.truetype(FONT, 112)
    word = "stor\u0131"  # dotless i: the dot is drawn in mint below
    left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
    x = (w - (right - left)) / 2 - left
    y = (h - (bottom - top)) / 2 - top + 10
    draw.text((x, y), word, font=font, fill=WHITE)

    # The dot sits centred over the dotless i's stem, a little above the x-height.
    i_left, i_top, i_right, _ = draw.textbbox(
        (x + font.getlength(word[:-1]), y), word[-1], font=font
    )
    cx = (i_left + i_right) / 2
    r = 14
    cy = i_top - r - 6
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=MINT)

    image.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS).save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
