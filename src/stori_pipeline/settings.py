"""Settings for the two functions, read once from the environment (never at import time).

Each settings class has one ``from_env(environ)`` that validates every variable and raises a
single :class:`~stori_pipeline.errors.ConfigurationError` listing *all* problems at once.
``REQUIRED`` / ``OPTIONAL`` name the variables, so the SAM template can be checked against them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final

from stori_pipeline.errors import ConfigurationError

if TYPE_CHECKING:  # the email function's only: see _presentation
    from stori_pipeline.localization import Presentation

__all__ = [
    "DEFAULT_METRICS_NAMESPACE",
    "DEFAULT_NUM_WORKERS",
    "EmailSettings",
    "IngestSettings",
    "ScaleOutSettings",
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
# The distributed path (see README, "Files too big for one function"): objects from 128 MiB
# on, ranges of 64 MiB, duplicate ids resolved in 16 partitions.
DEFAULT_LARGE_OBJECT_BYTES = 128 * 1024 * 1024
DEFAULT_RANGE_BYTES = 64 * 1024 * 1024
DEFAULT_PARTITIONS = 16


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
    OPTIONAL: ClassVar[tuple[str, ...]] = (
        "EVENT_BUS_NAME",
        "NUM_WORKERS",
        "MAX_ATTEMPTS",
        "STATE_MACHINE_ARN",
        "LARGE_OBJECT_BYTES",
    )

    transactions_table: str
    event_bus_name: str
    idempotency_table: str
    objects_table: str
    num_workers: int = DEFAULT_NUM_WORKERS
    max_attempts: int = 8
    # Objects of at least ``large_object_bytes`` start the distributed workflow instead
    # (stori_pipeline.scaleout); no state machine means every object is read here.
    state_machine_arn: str = ""
    large_object_bytes: int = DEFAULT_LARGE_OBJECT_BYTES

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
            state_machine_arn=env.text("STATE_MACHINE_ARN", ""),
            large_object_bytes=env.integer(
                "LARGE_OBJECT_BYTES", DEFAULT_LARGE_OBJECT_BYTES, 1, 1 << 50
            ),
        )
        env.check()
        return settings

    def routes_to_workflow(self, size: int | None) -> bool:
        """Whether an object of ``size`` bytes takes the distributed path."""
        return bool(self.state_machine_arn) and size is not None and size >= self.large_object_bytes


@dataclass(frozen=True, slots=True)
class ScaleOutSettings:
    """Settings of ``process-large-transaction`` (every step of the distributed workflow)."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("TRANSACTIONS_TABLE", "OBJECTS_TABLE")
    OPTIONAL: ClassVar[tuple[str, ...]] = (
        "EVENT_BUS_NAME",
        "NUM_WORKERS",
        "MAX_ATTEMPTS",
        "RANGE_BYTES",
        "PARTITIONS",
        # Set on every function by the template's Globals; the workflow's steps keep no
        # idempotency records of their own (each step is idempotent by construction).
        "IDEMPOTENCY_TABLE",
    )

    transactions_table: str
    objects_table: str
    event_bus_name: str = "default"
    num_workers: int = DEFAULT_NUM_WORKERS
    max_attempts: int = 8
    range_bytes: int = DEFAULT_RANGE_BYTES
    partitions: int = DEFAULT_PARTITIONS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ScaleOutSettings:
        """Read and validate; raises ``ConfigurationError`` listing every problem."""
        env = _Env(os.environ if environ is None else environ)
        settings = cls(
            transactions_table=env.text("TRANSACTIONS_TABLE"),
            objects_table=env.text("OBJECTS_TABLE"),
            event_bus_name=env.text("EVENT_BUS_NAME", "default"),
            num_workers=env.integer("NUM_WORKERS", DEFAULT_NUM_WORKERS, 1, 64),
            max_attempts=env.integer("MAX_ATTEMPTS", 8, 1, 20),
            range_bytes=env.integer("RANGE_BYTES", DEFAULT_RANGE_BYTES, 1024, 1 << 40),
            partitions=env.integer("PARTITIONS", DEFAULT_PARTITIONS, 1, 256),
        )
        env.check()
        return settings


@dataclass(frozen=True, slots=True)
class EmailSettings:
    """Settings of ``send-user-email``.

    ``default_locale`` (``es-MX``: Stori's customers are in Mexico) is used for recipients
    without a usable ``Users.Locale``; ``currency`` is the deployment's (``MXN``). An empty
    ``email_subject`` means the localized subject line; ``support_email`` and
    ``support_phone`` are optional footer contacts.
    """

    REQUIRED: ClassVar[tuple[str, ...]] = (
        "USERS_TABLE",
        "TEMPLATES_BUCKET",
        "SENDER_EMAIL",
        "IDEMPOTENCY_TABLE",
    )
    OPTIONAL: ClassVar[tuple[str, ...]] = (
        "EMAIL_SUBJECT",
        "TEMPLATE_KEY",
        "DEFAULT_LOCALE",
        "CURRENCY",
        "SUPPORT_EMAIL",
        "SUPPORT_PHONE",
    )

    users_table: str
    templates_bucket: str
    sender_email: str
    idempotency_table: str
    email_subject: str | None = None
    template_key: str = "email/summary.html.j2"
    default_locale: str = "es-MX"
    currency: str = "MXN"
    support_email: str = ""
    support_phone: str = ""

    @property
    def presentation(self) -> Presentation:
        """Locale, currency and support contact as the renderer takes them."""
        from stori_pipeline import localization  # noqa: PLC0415 - see _presentation

        return localization.Presentation(
            self.default_locale, self.currency, self.support_email, self.support_phone
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EmailSettings:
        """Read and validate; raises ``ConfigurationError`` listing every problem."""
        env = _Env(os.environ if environ is None else environ)
        subject = env.text("EMAIL_SUBJECT", "")
        if any(c in subject for c in "\r\n"):
            env.problems.append("EMAIL_SUBJECT must be a single line")
        presentation = _presentation(env)
        settings = cls(
            users_table=env.text("USERS_TABLE"),
            templates_bucket=env.text("TEMPLATES_BUCKET"),
            sender_email=env.text("SENDER_EMAIL"),
            idempotency_table=env.text("IDEMPOTENCY_TABLE"),
            email_subject=subject or None,
            template_key=env.text("TEMPLATE_KEY", "email/summary.html.j2"),
            default_locale=presentation.default_locale,
            currency=presentation.currency,
            support_email=presentation.support_email,
            support_phone=presentation.support_phone,
        )
        env.check()
        return settings


_PHONE: Final = re.compile(r"\+?[0-9][0-9 ().-]{2,30}")


def _presentation(env: _Env) -> Presentation:
    """DEFAULT_LOCALE, CURRENCY, SUPPORT_EMAIL and SUPPORT_PHONE, each checked."""
    # Imported here, not at the top: the ingest function reads settings too and never needs
    # Babel or the address validator (cold-start time).
    from email_validator import EmailNotValidError, validate_email  # noqa: PLC0415

    from stori_pipeline.localization import (  # noqa: PLC0415
        DEFAULT_CURRENCY,
        DEFAULT_LOCALE,
        Presentation,
        UnsupportedCurrencyError,
        UnsupportedLocaleError,
        check_currency,
        parse_locale,
    )

    locale = env.text("DEFAULT_LOCALE", DEFAULT_LOCALE)
    currency = env.text("CURRENCY", DEFAULT_CURRENCY)
    support_email = env.text("SUPPORT_EMAIL", "")
    support_phone = env.text("SUPPORT_PHONE", "")
    try:
        parse_locale(locale)
    except UnsupportedLocaleError as exc:
        env.problems.append(f"DEFAULT_LOCALE: {exc}")
        locale = DEFAULT_LOCALE
    try:
        currency = check_currency(currency)
    except UnsupportedCurrencyError as exc:
        env.problems.append(f"CURRENCY: {exc}")
        currency = DEFAULT_CURRENCY
    if support_email:
        try:
            support_email = validate_email(support_email, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            env.problems.append(f"SUPPORT_EMAIL is not an address: {exc}")
    if support_phone and not _PHONE.fullmatch(support_phone):
        env.problems.append(
            f"SUPPORT_PHONE must be digits, spaces, + ( ) - . (at most 32), got {support_phone!r}"
        )
    try:
        return Presentation.create(locale, currency, support_email, support_phone)
    except (UnsupportedLocaleError, UnsupportedCurrencyError):  # already reported above
        return Presentation()
