"""Settings for the two functions, read once from the environment (never at import time).

Each settings class has one ``from_env(environ)`` that validates every variable and raises a
single :class:`~stori_pipeline.errors.ConfigurationError` listing *all* problems at once.
``REQUIRED`` / ``OPTIONAL`` name the variables, so the SAM template can be checked against them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from stori_pipeline.errors import ConfigurationError

__all__ = [
    "DEFAULT_METRICS_NAMESPACE",
    "DEFAULT_NUM_WORKERS",
    "EmailSettings",
    "IngestSettings",
    "metrics_namespace",
]

# Where both functions' metrics go unless POWERTOOLS_METRICS_NAMESPACE says otherwise.
DEFAULT_METRICS_NAMESPACE = "StoriPipeline"


def metrics_namespace(environ: Mapping[str, str] | None = None) -> str:
    """The CloudWatch namespace of both functions: ``POWERTOOLS_METRICS_NAMESPACE`` first.

    Read per invocation (never at import), and the same way by both handlers, so their
    metrics land in one namespace.
    """
    env = os.environ if environ is None else environ
    return env.get("POWERTOOLS_METRICS_NAMESPACE", "").strip() or DEFAULT_METRICS_NAMESPACE


# Chosen by the ingest benchmark's NUM_WORKERS sweep (see README, "Performance"): 16 was the
# fastest in two runs (~10% over 8; 1 -> 2 is the big step, 32 is slower again).
DEFAULT_NUM_WORKERS = 16


class _Env:
    """Collects problems while reading variables, so every one is reported together."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def text(self, name: str, default: str | None = None) -> str:
        value = self.environ.get(name, "").strip()
        if value:
            return value
        if default is None:
            self.problems.append(f"{name} is required")
            return ""
        return default

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name} must be an integer, got {raw!r}")
            return default
        if not low <= value <= high:
            self.problems.append(f"{name} must be between {low} and {high}, got {value}")
        return value

    def check(self) -> None:
        if self.problems:
            raise ConfigurationError(self.problems)


@dataclass(frozen=True, slots=True)
class IngestSettings:
    """Settings of ``process-user-transaction``."""

    REQUIRED: ClassVar[tuple[str, ...]] = (
        "TRANSACTIONS_TABLE",
        "OBJECTS_TABLE",
        "IDEMPOTENCY_TABLE",
    )
    OPTIONAL: ClassVar[tuple[str, ...]] = ("EVENT_BUS_NAME", "NUM_WORKERS", "MAX_ATTEMPTS")

    transactions_table: str
    event_bus_name: str
    idempotency_table: str
    objects_table: str
    num_workers: int = DEFAULT_NUM_WORKERS
    max_attempts: int = 8

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IngestSettings:
        """Read and validate; raises ``ConfigurationError`` listing every problem."""
        env = _Env(os.environ if environ is None else environ)
        settings = cls(
            transactions_table=env.text("TRANSACTIONS_TABLE"),
            objects_table=env.text("OBJECTS_TABLE"),
            event_bus_name=env.text("EVENT_BUS_NAME", "default"),
            idempotency_table=env.text("IDEMPOTENCY_TABLE"),
            num_workers=env.integer("NUM_WORKERS", DEFAULT_NUM_WORKERS, 1, 64),
            max_attempts=env.integer("MAX_ATTEMPTS", 8, 1, 20),
        )
        env.check()
        return settings


@dataclass(frozen=True, slots=True)
class EmailSettings:
    """Settings of ``send-user-email``."""

    REQUIRED: ClassVar[tuple[str, ...]] = (
        "USERS_TABLE",
        "TEMPLATES_BUCKET",
        "SENDER_EMAIL",
        "IDEMPOTENCY_TABLE",
    )
    OPTIONAL: ClassVar[tuple[str, ...]] = ("EMAIL_SUBJECT", "TEMPLATE_KEY")

    users_table: str
    templates_bucket: str
    sender_email: str
    idempotency_table: str
    email_subject: str = "Your Stori account summary"
    template_key: str = "email/summary.html.j2"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EmailSettings:
        """Read and validate; raises ``ConfigurationError`` listing every problem."""
        env = _Env(os.environ if environ is None else environ)
        settings = cls(
            users_table=env.text("USERS_TABLE"),
            templates_bucket=env.text("TEMPLATES_BUCKET"),
            sender_email=env.text("SENDER_EMAIL"),
            idempotency_table=env.text("IDEMPOTENCY_TABLE"),
            email_subject=env.text("EMAIL_SUBJECT", "Your Stori account summary"),
            template_key=env.text("TEMPLATE_KEY", "email/summary.html.j2"),
        )
        if any(c in settings.email_subject for c in "\r\n"):
            env.problems.append("EMAIL_SUBJECT must be a single line")
        env.check()
        return settings
