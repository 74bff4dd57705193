r"""Why a header matched no column: the file's encoding, compression or delimiter is not CSV's.

A file saved as UTF-16 (Excel's "Unicode text"), a gzip or zip archive, or a CSV written with
``;`` (a spreadsheet in a comma-decimal locale) reaches the header check as text that names no
column. :func:`header_hint` recognizes these from the decoded header record — bytes that are
not UTF-8 arrive as lone surrogates (``surrogateescape``), so ``\xff\xfe`` is ``\udcff\udcfe``
— and says what to do, for the ``bad_header`` detail. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["header_hint"]

_UTF16_BOMS = ("\udcff\udcfe", "\udcfe\udcff")  # FF FE (little endian), FE FF (big endian)
_GZIP = "\x1f\udc8b"  # 1F 8B
_ZIP = "PK\x03\x04"
_DELIMITERS = {";": "';'", "\t": "tabs", "|": "'|'"}


def header_hint(header: Sequence[str]) -> str | None:
    """What is wrong with the file as a whole, judged from its header record; else ``None``."""
    text = ",".join(header)
    # Magic bytes first: archives hold NUL bytes too.
    if text.startswith(_GZIP):
        return "the file is gzip-compressed: upload the uncompressed CSV"
    if text.startswith(_ZIP):
        return "the file is a zip archive (or an .xlsx workbook): upload the CSV itself"
    if text.startswith(_UTF16_BOMS) or "\x00" in text:
        return "the file looks UTF-16 encoded (a byte-order mark or NUL bytes): save it as UTF-8"
    if len(header) == 1:
        for delimiter, name in _DELIMITERS.items():
            if delimiter in header[0]:
                return f"the columns are separated by {name}: the delimiter must be ','"
    return None
