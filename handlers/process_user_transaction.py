"""PLACEHOLDER written by the deploy issue so `sam build` has a handler to package.

The real handler comes from the ingest/email issue and replaces this file when merged.
"""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Not implemented here: the lead replaces this module with the real handler."""
    raise NotImplementedError("placeholder handler; see the ingest/email issues")
