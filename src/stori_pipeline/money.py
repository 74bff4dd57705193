"""Money arithmetic: integer cents inside, ``Decimal`` and two-decimal strings outside.

Amounts are parsed from their text straight into integer cents (never through ``float``), so
sums are exact and cheap; :func:`cents_to_decimal` and :func:`format_cents` present them.
"""

from __future__ import annotations

from decimal import Decimal

__all__ = ["average_cents", "cents_to_decimal", "format_cents", "parse_cents"]


def parse_cents(text: str) -> int:
    """Cents of an amount text that already matches SPEC §2's pattern: ``"-10.3"`` -> ``-1030``."""
    dot = text.find(".")
    if dot < 0:
        return int(text) * 100
    digits = len(text) - dot - 1
    cents = int(text[:dot] + text[dot + 1 :])
    return cents * 10 if digits == 1 else cents


def average_cents(total_cents: int, count: int) -> int:
    """``total / count`` in cents, rounded half-up (ties away from zero), exactly."""
    quotient, remainder = divmod(abs(total_cents), count)
    if 2 * remainder >= count:
        quotient += 1
    return -quotient if total_cents < 0 else quotient


def format_cents(cents: int) -> str:
    """Two fractional digits, no ``-0.00``: ``-1538`` -> ``"-15.38"``, ``0`` -> ``"0.00"``."""
    whole, frac = divmod(abs(cents), 100)
    return f"{'-' if cents < 0 else ''}{whole}.{frac:02d}"


def cents_to_decimal(cents: int) -> Decimal:
    """Exact ``Decimal`` with two places: ``6050`` -> ``Decimal("60.50")``."""
    return Decimal(format_cents(cents))
