"""What the operator commands share: exit statuses, one-line failures, literal text."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

from stori_pipeline.errors import AwsOperationError, StoriPipelineError
from stori_pipeline.ops.deployment import NoTargetError

EXIT_OK = 0
EXIT_FAILED = 1  # AWS said no, the stack is missing, or what was asked for does not exist
EXIT_USAGE = 2  # a bad value or a missing option: nothing was called

_HINTS = {
    "ResourceNotFoundException": "it does not exist",
    "NoSuchBucket": "the bucket does not exist",
    "AccessDenied": "access denied",
    "AccessDeniedException": "access denied",
    "ExpiredToken": "the credentials have expired",
    "ExpiredTokenException": "the credentials have expired",
}


def fail(command: str, message: str, status: int) -> int:
    """Print ``stori-pipeline: COMMAND: MESSAGE`` on stderr; return ``status``."""
    print(f"stori-pipeline: {command}: {message}", file=sys.stderr)
    return status


def literal(text: object) -> str:
    """``text`` with control characters escaped, so AWS data cannot move the cursor."""
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
        for c in str(text)
    )


class CommandFailedError(StoriPipelineError):
    """A command cannot go on; ``status`` is its exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        self.status = status
        super().__init__(message)


def run(command: str, work: Coroutine[Any, Any, int]) -> int:
    """Run ``work`` (which prints and returns its exit status); map failures to one line."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        return asyncio.run(work)
    except NoTargetError as exc:
        return fail(command, str(exc), EXIT_USAGE)
    except CommandFailedError as exc:
        return fail(command, str(exc), exc.status)
    except (AwsOperationError, ClientError) as exc:
        code = (
            exc.code
            if isinstance(exc, AwsOperationError)
            else exc.response.get("Error", {}).get("Code")
        )
        hint = _HINTS.get(code or "")
        message = literal(str(exc))
        return fail(command, message if hint is None else f"{message} ({hint})", EXIT_FAILED)
    except StoriPipelineError as exc:
        return fail(command, literal(str(exc)), EXIT_FAILED)
    except BotoCoreError as exc:  # no credentials, no region, endpoint unreachable, …
        return fail(command, literal(str(exc)), EXIT_FAILED)
