"""SPEC §3's JSON example (the challenge's worked example), verbatim, for tests."""

from __future__ import annotations

import copy
from typing import Any

_SPEC_EXAMPLE: dict[str, Any] = {
    "accountId": "AccountId123",
    "balance": "39.74",
    "transactionCount": 4,
    "credit": {"count": 2, "total": "70.50", "average": "35.25"},
    "debit": {"count": 2, "total": "-30.76", "average": "-15.38"},
    "months": [
        {
            "year": None,
            "month": 7,
            "transactionCount": 2,
            "credit": {"count": 1, "total": "60.50", "average": "60.50"},
            "debit": {"count": 1, "total": "-10.30", "average": "-10.30"},
        },
        {
            "year": None,
            "month": 8,
            "transactionCount": 2,
            "credit": {"count": 1, "total": "10.00", "average": "10.00"},
            "debit": {"count": 1, "total": "-20.46", "average": "-20.46"},
        },
    ],
}


def spec_example_json() -> dict[str, Any]:
    """A fresh copy of SPEC §3's JSON example (callers may mutate it)."""
    return copy.deepcopy(_SPEC_EXAMPLE)
