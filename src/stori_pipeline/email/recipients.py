"""Who gets the email: the ``Users`` table (SPEC §4, §6) read through an injected client.

``AccountId`` -> ``Email``, ``Name`` and the optional ``Locale`` (``es-MX``; the renderer falls
back to the deployment's default when it is absent or unusable). A missing item or a
missing/invalid address is a :class:`~stori_pipeline.email.errors.RecipientError` (permanent:
no retry can fix the data); a failed AWS call is an
:class:`~stori_pipeline.errors.AwsOperationError` (retried by Lambda).
"""

from __future__ import annotations

from botocore.exceptions import ClientError
from email_validator import EmailNotValidError, validate_email

from stori_pipeline.email.clients import DynamoDBClient
from stori_pipeline.email.errors import InvalidEmailError, UnknownAccountError
from stori_pipeline.email.render import User
from stori_pipeline.errors import AwsOperationError

__all__ = ["lookup_user", "normalize_email"]


def normalize_email(raw: str, *, account_id: str) -> str:
    """The validated, normalized ASCII address, or :class:`InvalidEmailError`.

    No DNS lookup (Lambda should not depend on resolvers for this), and no SMTPUTF8: SES
    cannot send to internationalized local parts, so those are rejected here, clearly, rather
    than by SES later. Internationalized domains are converted to their ASCII (IDNA) form.
    """
    if not raw.strip():
        raise InvalidEmailError(account_id=account_id, reason="Email is empty")
    try:
        result = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidEmailError(account_id=account_id, reason=str(exc)) from exc
    return str(result.ascii_email or result.normalized)


async def lookup_user(dynamodb: DynamoDBClient, *, table: str, account_id: str) -> User:
    """Read the account's user from ``table`` with a strongly consistent ``GetItem``.

    Raises:
        UnknownAccountError: No item for ``account_id``.
        InvalidEmailError: The item has no ``Email`` string or it is not a valid address.
        AwsOperationError: DynamoDB failed (after botocore's own retries).
    """
    try:
        response = await dynamodb.get_item(
            TableName=table,
            Key={"AccountId": {"S": account_id}},
            ProjectionExpression="AccountId, Email, #n, #l",
            ExpressionAttributeNames={"#n": "Name", "#l": "Locale"},
            ConsistentRead=True,
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise AwsOperationError(
            str(error.get("Message", exc)),
            service="dynamodb",
            operation="GetItem",
            code=error.get("Code"),
        ) from exc
    item = response.get("Item")
    if item is None:
        raise UnknownAccountError(account_id=account_id, table=table)
    email = item.get("Email", {}).get("S")
    if email is None:
        raise InvalidEmailError(account_id=account_id, reason="Email attribute is missing")
    name = item.get("Name", {}).get("S", "")
    locale = item.get("Locale", {}).get("S")
    return User(account_id, normalize_email(email, account_id=account_id), name, locale)
