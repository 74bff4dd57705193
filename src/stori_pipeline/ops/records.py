"""Powertools idempotency items, read back: what each function recorded about its calls.

The ingest's record (id prefix :data:`~stori_pipeline.idempotency.INGEST_KEY_PREFIX`) keeps
the handler's result: ``status`` ``processed`` with the import's counts and accounts, or
``skipped`` with the reason; the email function's records keep ``sent`` (recipient, message
id) or ``failed`` (reason) per import and account. A call that raised leaves no record
(Powertools deletes it so the retry can run); only the dead-letter queues remember those.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stori_pipeline.idempotency import EMAIL_TTL_SECONDS, INGEST_KEY_PREFIX, INGEST_TTL_SECONDS

__all__ = ["IdempotencyRecord"]


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """One item of the idempotency table.

    ``status`` is Powertools' (``COMPLETED``, ``INPROGRESS``); ``expiration`` epoch seconds;
    ``in_progress_until`` epoch milliseconds (only while ``INPROGRESS``); ``data`` the stored
    result (``None`` until completed, or when it is not JSON).
    """

    id: str
    status: str
    expiration: int | None
    in_progress_until: int | None
    data: Mapping[str, Any] | None

    @classmethod
    def from_item(cls, item: Mapping[str, Mapping[str, str]]) -> IdempotencyRecord:
        """From a low-level DynamoDB item."""
        data: Mapping[str, Any] | None = None
        raw = item.get("data", {}).get("S")
        if raw is not None:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            data = parsed if isinstance(parsed, dict) else None
        return cls(
            id=item.get("id", {}).get("S", ""),
            status=item.get("status", {}).get("S", ""),
            expiration=_number(item.get("expiration")),
            in_progress_until=_number(item.get("in_progress_expiration")),
            data=data,
        )

    @property
    def is_ingest(self) -> bool:
        """Whether the ingest function wrote it."""
        return self.id.startswith(f"{INGEST_KEY_PREFIX}#")

    @property
    def is_email(self) -> bool:
        """Whether the email function wrote it (its result names an import and an account)."""
        return (
            not self.is_ingest
            and self.data is not None
            and "importId" in self.data
            and "accountId" in self.data
        )

    @property
    def recorded_at(self) -> int | None:
        """When the call completed, epoch seconds (the expiry minus the function's TTL)."""
        if self.expiration is None:
            return None
        return self.expiration - (INGEST_TTL_SECONDS if self.is_ingest else EMAIL_TTL_SECONDS)

    def field(self, name: str) -> Any:  # noqa: ANN401 - a JSON value of the stored result
        """A field of the stored result, ``None`` when absent."""
        return None if self.data is None else self.data.get(name)


def _number(value: Mapping[str, str] | None) -> int | None:
    if value is None or "N" not in value:
        return None
    try:
        return int(value["N"].split(".")[0])
    except ValueError:
        return None
