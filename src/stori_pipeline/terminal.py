r"""Showing file- and AWS-derived text on a terminal literally, never as instructions.

An Id, a key, an address or an error message may hold rich markup (``[link=…]x[/link]``,
``[/bold]`` — which makes rich raise ``MarkupError``) or raw control characters (``ESC [ 31 m``
colours, ``ESC ] 8`` hyperlinks, a carriage return that overwrites the line, bidi overrides
that reorder it). Every command passes such text through:

- :func:`visible` before a plain ``print``: control characters become visible escapes
  (``\x1b``, ``\n``, ``\u202e``), the way Python's ``repr`` shows them;
- :func:`literal` before it goes into a rich markup string: :func:`visible`, then rich's
  markup escaped, so it prints exactly as it reads;
- :func:`json_text` over JSON output: JSON leaves DEL, the C1 controls (one of which, U+009B,
  is a CSI on some terminals) and bidi controls unescaped; they become ``\uXXXX`` escapes,
  which parse back to the same strings.
"""

from __future__ import annotations

import unicodedata

from rich.markup import escape

__all__ = ["json_text", "literal", "visible"]

# Bidirectional formatting characters: they reorder what the terminal shows ("Trojan Source").
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# Line and paragraph separators end a line on some terminals, like "\n".
_SEPARATORS = "\u2028\u2029"
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_of(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_CONTROLS = [chr(c) for c in range(0x110) if unicodedata.category(chr(c)) == "Cc"]
_VISIBLE = str.maketrans({c: _escape_of(c) for c in [*_CONTROLS, *_BIDI, *_SEPARATORS]})
# JSON already escapes U+0000-U+001F; these are the rest a terminal may act on.
_JSON_UNSAFE = str.maketrans(
    {c: f"\\u{ord(c):04x}" for c in [*_CONTROLS, *_BIDI, *_SEPARATORS] if ord(c) >= 0x7F}
)


def visible(text: object) -> str:
    """``str(text)`` with every control, bidi and line-separator character shown as an escape."""
    return str(text).translate(_VISIBLE)


def literal(text: object) -> str:
    """``text`` ready for a rich markup string: shown exactly, styled by nothing in it."""
    return escape(visible(text))


def json_text(dumped: str) -> str:
    r"""JSON text (from ``json.dumps(..., ensure_ascii=False)``) that is safe on a terminal.

    Such characters can only occur inside JSON strings, where ``\uXXXX`` means the same
    character: the document parses back to exactly the same value.
    """
    return dumped.translate(_JSON_UNSAFE)
