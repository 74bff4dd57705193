"""The narrow slices of the AWS clients the email feature calls (its I/O seams).

aioboto3 clients satisfy these structurally; tests may pass anything with the same methods.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["DynamoDBClient", "S3Client", "SESv2Client"]


class DynamoDBClient(Protocol):
    """The ``GetItem`` call of an aioboto3 DynamoDB client."""

    async def get_item(self, **kwargs: object) -> dict[str, Any]:
        """``GetItem``."""
        ...


class S3Client(Protocol):
    """The ``GetObject`` call of an aioboto3 S3 client."""

    async def get_object(self, **kwargs: object) -> dict[str, Any]:
        """``GetObject`` (the ``Body`` is an async stream)."""
        ...


class SESv2Client(Protocol):
    """The ``SendEmail`` call of an aioboto3 SESv2 client."""

    async def send_email(self, **kwargs: object) -> dict[str, Any]:
        """``SendEmail``."""
        ...
