"""Seed a fresh deployment without the console: ``users put`` and ``template push``.

``stori-pipeline users put ACCOUNT --email E --name N [--locale es-MX]`` writes one ``Users``
item (SPEC §4: ``AccountId`` → ``Email``, ``Name``, optional ``Locale``); ``stori-pipeline
template push [FILE]`` uploads the email template to ``email/summary.html.j2`` in the templates
bucket after checking that it parses as Jinja2. Table and bucket come from
``--table``/``--bucket``, else from the outputs of the stack ``--stack-name`` names
(:mod:`stori_pipeline.ops.deployment`), else from the functions' own variables
(``USERS_TABLE``, ``TEMPLATES_BUCKET``). ``--endpoint-url`` points the commands at a local
emulator. ``users get/list/delete`` live in :mod:`stori_pipeline.ops.users`.

Input is validated before any call (account id rule of SPEC §2, address by email-validator, a
one-line name, a locale the email is written in), so a bad value is a one-line message and exit
status 2, never a half-seeded table.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Protocol

from stori_pipeline import template_preview
from stori_pipeline.errors import AwsOperationError, PermanentError, StoriPipelineError
from stori_pipeline.ops import deployment
from stori_pipeline.ops import users as ops_users

__all__ = [
    "DEFAULT_TEMPLATE_KEY",
    "InvalidSeedInputError",
    "User",
    "packaged_template",
    "push_template",
    "put_user",
    "register",
]

DEFAULT_TEMPLATE_KEY = "email/summary.html.j2"
# The email function may read only this prefix (template.yaml, SendUserEmailFunction).
TEMPLATE_PREFIX = "email/"
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_NAME = 256

EXIT_OK = 0
EXIT_AWS = 1
EXIT_INVALID = 2


class DynamoDBClient(Protocol):
    """The one DynamoDB call seeding makes (an aioboto3 client satisfies it)."""

    async def put_item(self, **kwargs: object) -> object:
        """``PutItem``."""


class S3Client(Protocol):
    """The one S3 call seeding makes (an aioboto3 client satisfies it)."""

    async def put_object(self, **kwargs: object) -> object:
        """``PutObject``."""


_Call = Callable[[Any], Awaitable[None]]


class InvalidSeedInputError(PermanentError):
    """A value given to a seed command breaks its rule; ``field`` names which one."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True, slots=True)
class User:
    """One ``Users`` item; build it with :meth:`create`, which validates every field."""

    account_id: str
    email: str
    name: str
    locale: str | None = None

    @classmethod
    def create(cls, account_id: str, email: str, name: str, locale: str | None = None) -> User:
        """Validate and normalize; raises :class:`InvalidSeedInputError` on a bad value.

        ``locale`` (``es-MX``, ``en-US``; ``None`` to leave the attribute out, so the
        deployment's default applies) is stored as its canonical BCP 47 tag.
        """
        from email_validator import EmailNotValidError, validate_email  # noqa: PLC0415 - lazy

        account_id = account_id.strip(" \t")
        if not _ACCOUNT_ID.fullmatch(account_id):
            raise InvalidSeedInputError(
                "account", f"{account_id!r} must be 1-64 of A-Z a-z 0-9 _ - (SPEC §2)"
            )
        try:
            # No DNS here: seeding must work offline and against the emulator.
            normalized = validate_email(email.strip(), check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise InvalidSeedInputError("email", f"{email!r} is not valid: {exc}") from None
        name = name.strip()
        if not name or len(name) > _MAX_NAME:
            raise InvalidSeedInputError("name", f"must be 1-{_MAX_NAME} characters")
        # The name reaches the email greeting and possibly a header: no line breaks or controls.
        if any(unicodedata.category(c) in {"Cc", "Zl", "Zp"} for c in name):
            raise InvalidSeedInputError("name", "must be one line without control characters")
        return cls(account_id=account_id, email=normalized, name=name, locale=_locale_tag(locale))

    def to_item(self) -> dict[str, dict[str, str]]:
        """The DynamoDB item, in the low-level attribute-value format."""
        item = {
            "AccountId": {"S": self.account_id},
            "Email": {"S": self.email},
            "Name": {"S": self.name},
        }
        if self.locale is not None:
            item["Locale"] = {"S": self.locale}
        return item


def _locale_tag(locale: str | None) -> str | None:
    """The canonical tag (``es_mx`` -> ``es-MX``) or :class:`InvalidSeedInputError`."""
    if locale is None:
        return None
    from stori_pipeline.localization import (  # noqa: PLC0415 - only --locale needs Babel
        UnsupportedLocaleError,
        locale_tag,
    )

    try:
        return locale_tag(locale)
    except UnsupportedLocaleError as exc:
        raise InvalidSeedInputError("locale", f"{exc} (e.g. es-MX, en-US)") from None


def packaged_template() -> Traversable | None:
    """The email template shipped with the package, or ``None`` when this build has none."""
    candidate = resources.files("stori_pipeline") / "email" / "templates" / "email.html.j2"
    return candidate if candidate.is_file() else None


def check_template(text: str) -> None:
    """Raise :class:`InvalidSeedInputError` unless ``text`` parses as a Jinja2 template."""
    from jinja2 import TemplateSyntaxError  # noqa: PLC0415 - only template push needs jinja2
    from jinja2.sandbox import SandboxedEnvironment  # noqa: PLC0415

    try:
        SandboxedEnvironment(autoescape=True).parse(text)
    except TemplateSyntaxError as exc:
        raise InvalidSeedInputError(
            "template", f"line {exc.lineno}: {exc.message or 'syntax error'}"
        ) from None


def _translate(exc: Exception, service: str, operation: str) -> AwsOperationError:
    response: dict[str, Any] = getattr(exc, "response", {}) or {}
    code = response.get("Error", {}).get("Code")
    return AwsOperationError(str(exc), service=service, operation=operation, code=code)


async def put_user(client: DynamoDBClient, table: str, user: User) -> None:
    """Write (or replace) one user with an injected aioboto3 DynamoDB client."""
    from botocore.exceptions import ClientError  # noqa: PLC0415 - keep import time low

    try:
        await client.put_item(TableName=table, Item=user.to_item())
    except ClientError as exc:
        raise _translate(exc, "dynamodb", "PutItem") from exc


async def push_template(client: S3Client, bucket: str, key: str, body: bytes) -> None:
    """Upload a template with an injected aioboto3 S3 client."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    try:
        await client.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="text/plain; charset=utf-8"
        )
    except ClientError as exc:
        raise _translate(exc, "s3", "PutObject") from exc


# --- command line ----------------------------------------------------------------------------


def _fail(message: str, status: int) -> int:
    print(f"stori-pipeline: {message}", file=sys.stderr)
    return status


def _aws_message(exc: AwsOperationError, what: str) -> str:
    hints = {
        "ResourceNotFoundException": f"{what} does not exist",
        "NoSuchBucket": f"{what} does not exist",
        "AccessDenied": f"access denied to {what}",
        "AccessDeniedException": f"access denied to {what}",
    }
    hint = hints.get(exc.code or "", "")
    return f"{exc.service}.{exc.operation} failed ({exc.code or 'no error code'})" + (
        f": {hint}" if hint else ""
    )


async def _with_client(service: str, args: argparse.Namespace, call: _Call) -> None:
    async with deployment.Target.from_args(args).client(service) as client:
        await call(client)


def _run_aws(service: str, args: argparse.Namespace, call: _Call, what: str) -> int | None:
    """Run one AWS call; a one-line message and exit 1 on any AWS or connection failure."""
    from botocore.exceptions import BotoCoreError  # noqa: PLC0415

    try:
        asyncio.run(_with_client(service, args, call))
    except AwsOperationError as exc:
        return _fail(_aws_message(exc, what), EXIT_AWS)
    except BotoCoreError as exc:  # no credentials, no region, endpoint unreachable, …
        return _fail(f"{service}: {exc}", EXIT_AWS)
    return None


def _users_put(args: argparse.Namespace) -> int:
    try:
        user = User.create(args.account, args.email, args.name, args.locale)
    except InvalidSeedInputError as exc:
        return _fail(f"users put: {exc}", EXIT_INVALID)
    try:
        table = deployment.resource_name(
            args, args.table, deployment.USERS_TABLE, "USERS_TABLE", "--table"
        )
    except StoriPipelineError as exc:  # no such stack or output, or DescribeStacks failed
        return _fail(f"users put: {exc}", _target_status(exc))

    async def call(client: DynamoDBClient) -> None:
        await put_user(client, table, user)

    failed = _run_aws("dynamodb", args, call, f"table {table!r}")
    if failed is not None:
        return failed
    locale = f" ({user.locale})" if user.locale else ""
    print(f"put user {user.account_id} <{user.email}>{locale} into {table}")
    return EXIT_OK


def _read_template(file: str | None) -> tuple[str, bytes]:
    """(label, bytes) of FILE, or of the packaged template when FILE is omitted."""
    if file is None:
        packaged = packaged_template()
        if packaged is None:
            raise InvalidSeedInputError("FILE", "required: this build ships no packaged template")
        return "packaged email.html.j2", packaged.read_bytes()
    try:
        return file, Path(file).read_bytes()
    except OSError as exc:
        raise InvalidSeedInputError("FILE", f"cannot read {file}: {exc.strerror or exc}") from None


def _check_key(key: str) -> None:
    if not key.startswith(TEMPLATE_PREFIX) or key == TEMPLATE_PREFIX:
        raise InvalidSeedInputError(
            "key", f"{key!r} must be under {TEMPLATE_PREFIX} (the only prefix the function reads)"
        )


def _template_push(args: argparse.Namespace) -> int:
    key: str = args.key
    try:
        _check_key(key)
        label, body = _read_template(args.file)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSeedInputError("template", f"{label} is not UTF-8") from None
        check_template(text)
    except InvalidSeedInputError as exc:
        return _fail(f"template push: {exc}", EXIT_INVALID)
    try:
        bucket = deployment.resource_name(
            args, args.bucket, deployment.TEMPLATES_BUCKET, "TEMPLATES_BUCKET", "--bucket"
        )
    except StoriPipelineError as exc:  # no such stack or output, or DescribeStacks failed
        return _fail(f"template push: {exc}", _target_status(exc))

    async def call(client: S3Client) -> None:
        await push_template(client, bucket, key, body)

    failed = _run_aws("s3", args, call, f"bucket {bucket!r}")
    if failed is not None:
        return failed
    print(f"pushed {label} ({len(body):,} bytes) to s3://{bucket}/{key}")
    return EXIT_OK


def _target_status(exc: StoriPipelineError) -> int:
    # Nothing names the resource: a usage error; a missing stack or output: a failed lookup.
    return EXIT_INVALID if isinstance(exc, deployment.NoTargetError) else EXIT_AWS


def _add_aws_options(parser: argparse.ArgumentParser) -> None:
    deployment.add_target_options(parser)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``users put``, ``template push`` and ``template preview`` to the command line."""
    users = commands.add_parser("users", help="manage the Users table")
    users_commands = users.add_subparsers(metavar="ACTION", required=True)
    put = users_commands.add_parser(
        "put",
        help="add or replace one account holder",
        description=(
            "Write one Users item: AccountId -> Email, Name, optional Locale "
            "(replaces an existing one)."
        ),
    )
    put.add_argument("account", metavar="ACCOUNT", help="account id (1-64 of A-Z a-z 0-9 _ -)")
    put.add_argument("--email", required=True, help="recipient address of the summaries")
    put.add_argument("--name", required=True, help="name used in the greeting")
    put.add_argument(
        "--locale",
        default=None,
        metavar="TAG",
        help="language and formats of the emails, e.g. es-MX, en-US (default: the deployment's)",
    )
    put.add_argument(
        "--table",
        default=None,
        help="Users table (default: the stack's UsersTableName output, else $USERS_TABLE)",
    )
    _add_aws_options(put)
    put.set_defaults(command=_users_put)
    ops_users.register(users_commands)

    template = commands.add_parser("template", help="manage the email template")
    template_commands = template.add_subparsers(metavar="ACTION", required=True)
    push = template_commands.add_parser(
        "push",
        help="upload the email template",
        description="Check that FILE parses as Jinja2, then upload it to the templates bucket.",
    )
    push.add_argument(
        "file", metavar="FILE", nargs="?", default=None, help="template (default: the packaged one)"
    )
    push.add_argument(
        "--bucket",
        default=None,
        help="templates bucket (default: the stack's TemplatesBucketName, else $TEMPLATES_BUCKET)",
    )
    push.add_argument(
        "--key", default=DEFAULT_TEMPLATE_KEY, help="object key (default: %(default)s)"
    )
    _add_aws_options(push)
    push.set_defaults(command=_template_push)
    template_preview.register(template_commands)
