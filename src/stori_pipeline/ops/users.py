"""``users get``, ``users list`` and ``users delete``: the Users table without the console.

``users put`` (validation, normalization) lives in :mod:`stori_pipeline.seed`; these read and
remove what it wrote. Items are shown attribute by attribute as stored (``AccountId``,
``Email``, ``Name`` and any other, such as ``Locale``), with control characters escaped.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from stori_pipeline.ops import deployment
from stori_pipeline.ops._cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandFailedError,
    fail,
    literal,
    run,
)
from stori_pipeline.records import is_valid_account

__all__ = ["StoredUser", "delete_user", "get_user", "list_users", "register"]


class UsersClient(Protocol):
    """The DynamoDB calls made here (an aioboto3 client satisfies it)."""

    async def get_item(self, **kwargs: object) -> dict[str, Any]:
        """``GetItem``."""

    async def delete_item(self, **kwargs: object) -> dict[str, Any]:
        """``DeleteItem``."""

    async def scan(self, **kwargs: object) -> dict[str, Any]:
        """``Scan``."""


@dataclass(frozen=True, slots=True)
class StoredUser:
    """One Users item as stored: its account id and its string attributes."""

    account_id: str
    attributes: Mapping[str, str]

    @classmethod
    def from_item(cls, item: Mapping[str, Mapping[str, Any]]) -> StoredUser:
        """From a low-level DynamoDB item (non-string attributes shown as their JSON)."""
        values = {
            name: value["S"] if "S" in value else json.dumps(value, default=str)
            for name, value in item.items()
        }
        account = values.pop("AccountId", "")
        return cls(account_id=account, attributes=dict(sorted(values.items())))

    def to_json(self) -> dict[str, str]:
        """``{"AccountId": …, <attribute>: …}``."""
        return {"AccountId": self.account_id, **self.attributes}

    def line(self) -> str:
        """One line for a terminal: ``ACCOUNT  Name <Email>  Other=value``."""
        rest = dict(self.attributes)
        name, email = rest.pop("Name", ""), rest.pop("Email", "")
        extra = "".join(f"  {k}={v}" for k, v in rest.items())
        return literal(f"{self.account_id}  {name} <{email}>{extra}")


def _key(account_id: str) -> dict[str, dict[str, str]]:
    return {"AccountId": {"S": account_id}}


async def get_user(client: UsersClient, table: str, account_id: str) -> StoredUser | None:
    """The user of ``account_id``, or ``None`` when the table has none."""
    response = await client.get_item(TableName=table, Key=_key(account_id), ConsistentRead=True)
    item = response.get("Item")
    return None if item is None else StoredUser.from_item(item)


async def delete_user(client: UsersClient, table: str, account_id: str) -> StoredUser | None:
    """Delete the user of ``account_id``; return what was deleted (``None``: nothing was)."""
    response = await client.delete_item(
        TableName=table, Key=_key(account_id), ReturnValues="ALL_OLD"
    )
    item = response.get("Attributes")
    return None if item is None else StoredUser.from_item(item)


async def list_users(client: UsersClient, table: str) -> AsyncIterator[StoredUser]:
    """Every user, page by page (a ``Scan``: the table is keyed by account only)."""
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = await client.scan(**kwargs)
        for item in page.get("Items", []):
            yield StoredUser.from_item(item)
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# --- command line ----------------------------------------------------------------------------


async def _table(args: argparse.Namespace) -> str:
    return await deployment.resolve_name(
        deployment.Target.from_args(args),
        args.table,
        deployment.USERS_TABLE,
        "USERS_TABLE",
        "--table",
    )


def _account(args: argparse.Namespace) -> str:
    account: str = args.account.strip(" \t")
    if not is_valid_account(account):
        raise CommandFailedError(
            f"{account!r} is not an account id (1-64 of A-Z a-z 0-9 _ -)", EXIT_USAGE
        )
    return account


def _show(user: StoredUser, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(user.to_json(), ensure_ascii=False) + "\n")
    else:
        print(user.line())


def _users_get(args: argparse.Namespace) -> int:
    async def work() -> int:
        account, table = _account(args), await _table(args)
        async with deployment.Target.from_args(args).client("dynamodb") as client:
            user = await get_user(client, table, account)
        if user is None:
            return fail("users get", literal(f"no user {account} in {table}"), EXIT_FAILED)
        _show(user, args.json)
        return EXIT_OK

    return run("users get", work())


def _users_list(args: argparse.Namespace) -> int:
    async def work() -> int:
        table = await _table(args)
        count = 0
        async with deployment.Target.from_args(args).client("dynamodb") as client:
            async for user in list_users(client, table):
                _show(user, args.json)
                count += 1
        print(literal(f"{count:,} user(s) in {table}"), file=sys.stderr)
        return EXIT_OK

    return run("users list", work())


def _users_delete(args: argparse.Namespace) -> int:
    async def work() -> int:
        account, table = _account(args), await _table(args)
        async with deployment.Target.from_args(args).client("dynamodb") as client:
            user = await delete_user(client, table, account)
        if user is None:
            message = f"no user {account} in {table}; nothing deleted"
            return fail("users delete", literal(message), EXIT_FAILED)
        print(literal(f"deleted user {user.line()} from {table}"))
        return EXIT_OK

    return run("users delete", work())


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--table",
        default=None,
        help="Users table (default: the stack's UsersTableName output, else $USERS_TABLE)",
    )
    deployment.add_target_options(parser)


def register(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``get``, ``list`` and ``delete`` to the ``users`` command's actions."""
    get = actions.add_parser(
        "get",
        help="show one account holder",
        description="Show the Users item of ACCOUNT (exit status 1 when there is none).",
    )
    get.add_argument("account", metavar="ACCOUNT", help="account id")
    get.add_argument("--json", action="store_true", help="print the item as one JSON object")
    _common(get)
    get.set_defaults(command=_users_get)

    listing = actions.add_parser(
        "list",
        help="list every account holder",
        description="Print every Users item, one per line (JSON lines with --json).",
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    _common(listing)
    listing.set_defaults(command=_users_list)

    delete = actions.add_parser(
        "delete",
        help="remove one account holder",
        description=(
            "Delete the Users item of ACCOUNT; its summaries are then not emailed "
            "(unknown account). Exit status 1 when there was none."
        ),
    )
    delete.add_argument("account", metavar="ACCOUNT", help="account id")
    _common(delete)
    delete.set_defaults(command=_users_delete)
