"""Which deployment a command acts on: a CloudFormation stack's outputs, and AWS clients.

Every command that touches a deployment takes ``--stack-name NAME`` and reads the names it
needs (tables, buckets, queues, function ARNs) from that stack's ``Outputs``
(``DescribeStacks``), so an operator never copies a generated name by hand. An explicit flag
such as ``--table`` still wins, and without a stack the functions' own variables
(``USERS_TABLE`` …) are the fallback. Credentials, region and endpoint come from the usual AWS
settings (``AWS_PROFILE``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``) or the
``--profile``/``--region``/``--endpoint-url`` flags.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from stori_pipeline.errors import AwsOperationError, StoriPipelineError

__all__ = [
    "DLQ_OUTPUTS",
    "STACK_ENV",
    "Deployment",
    "DeploymentError",
    "MissingOutputError",
    "NoTargetError",
    "StackNotFoundError",
    "Target",
    "add_target_options",
    "describe_deployment",
    "resolve_name",
    "resource_name",
]

# The stack name when --stack-name is not given (so one `export` serves a whole session).
STACK_ENV = "STORI_PIPELINE_STACK"

# Output keys of template.yaml that these commands read (tests/deploy checks they exist).
TRANSACTIONS_BUCKET = "TransactionsBucketName"
TEMPLATES_BUCKET = "TemplatesBucketName"
USERS_TABLE = "UsersTableName"
IDEMPOTENCY_TABLE = "IdempotencyTableName"
INGEST_FUNCTION = "ProcessUserTransactionFunctionArn"
# Each dead-letter queue's output key and what waits in it.
DLQ_OUTPUTS: Mapping[str, str] = {
    "ProcessUserTransactionDLQUrl": "ingest invocations that failed after Lambda's retries",
    "ProcessTransactionRuleDLQUrl": "upload events EventBridge could not deliver",
    "SendUserEmailDLQUrl": "email invocations that failed after Lambda's retries",
    "EmailRuleDLQUrl": "summary events EventBridge could not deliver",
    "IngestWorkflowDLQUrl": "large uploads whose ingest workflow failed (the job and the error)",
}


class DeploymentError(StoriPipelineError):
    """The deployment to act on cannot be found, or lacks what the command needs."""


class NoTargetError(DeploymentError):
    """Nothing names the resource: no flag, no stack, no environment variable (usage error)."""


class StackNotFoundError(DeploymentError):
    """``DescribeStacks`` knows no such stack in this account and region."""

    def __init__(self, stack_name: str) -> None:
        self.stack_name = stack_name
        super().__init__(
            f"stack {stack_name!r} does not exist in this account and region "
            "(check --stack-name, AWS_PROFILE and AWS_REGION)"
        )


class MissingOutputError(DeploymentError):
    """The stack exists but has no output the command needs (an older template)."""

    def __init__(self, stack_name: str, output: str) -> None:
        self.stack_name = stack_name
        self.output = output
        super().__init__(
            f"stack {stack_name!r} has no output {output!r}: redeploy it from this "
            "version's template.yaml"
        )


class CloudFormationClient(Protocol):
    """The one CloudFormation call made here (an aioboto3 client satisfies it)."""

    async def describe_stacks(self, **kwargs: object) -> dict[str, Any]:
        """``DescribeStacks``."""


@dataclass(frozen=True, slots=True)
class Deployment:
    """A stack's name and its outputs (``OutputKey`` -> ``OutputValue``)."""

    stack_name: str
    outputs: Mapping[str, str]

    def output(self, key: str) -> str:
        """The value of output ``key``; raises :class:`MissingOutputError` when absent."""
        value = self.outputs.get(key)
        if not value:
            raise MissingOutputError(self.stack_name, key)
        return value


async def describe_deployment(client: CloudFormationClient, stack_name: str) -> Deployment:
    """Read a stack's outputs with an injected CloudFormation client."""
    from botocore.exceptions import ClientError  # noqa: PLC0415 - keep import time low

    try:
        response = await client.describe_stacks(StackName=stack_name)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        # CloudFormation answers an unknown stack with a generic ValidationError.
        if error.get("Code") == "ValidationError" and "does not exist" in error.get("Message", ""):
            raise StackNotFoundError(stack_name) from exc
        raise AwsOperationError(
            str(exc), service="cloudformation", operation="DescribeStacks", code=error.get("Code")
        ) from exc
    (stack,) = response["Stacks"]
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    return Deployment(stack_name=stack_name, outputs=outputs)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a command's AWS calls go: an optional stack plus profile, region and endpoint.

    ``None`` leaves the choice to botocore's usual chain (environment, then AWS config).
    """

    stack_name: str | None = None
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Target:
        """The target the options of :func:`add_target_options` describe."""
        return cls(
            stack_name=getattr(args, "stack_name", None) or None,
            profile=getattr(args, "profile", None) or None,
            region=getattr(args, "region", None) or None,
            endpoint_url=getattr(args, "endpoint_url", None) or None,
        )

    @asynccontextmanager
    async def client(self, service: str) -> AsyncIterator[Any]:
        """An aioboto3 client for ``service``, closed on exit."""
        import aioboto3  # noqa: PLC0415 - the offline commands must not pay for aioboto3

        session = aioboto3.Session(profile_name=self.profile, region_name=self.region)
        async with session.client(service, endpoint_url=self.endpoint_url) as client:
            yield client

    async def deployment(self) -> Deployment:
        """The stack's outputs; raises :class:`NoTargetError` when no stack is named."""
        if self.stack_name is None:
            raise NoTargetError(f"give --stack-name or set {STACK_ENV}")
        from botocore.exceptions import BotoCoreError  # noqa: PLC0415

        try:
            async with self.client("cloudformation") as cloudformation:
                return await describe_deployment(cloudformation, self.stack_name)
        except BotoCoreError as exc:  # no credentials or region, endpoint unreachable
            raise DeploymentError(f"cannot read stack {self.stack_name!r}: {exc}") from exc


async def resolve_name(
    target: Target, explicit: str | None, output: str, env_var: str, flag: str
) -> str:
    """One resource's name: ``flag``'s value, else the stack's ``output``, else ``$env_var``.

    Raises:
        NoTargetError: none of the three names it.
        DeploymentError: the stack does not exist or lacks the output.
    """
    if explicit:
        return explicit
    if target.stack_name is not None:
        return (await target.deployment()).output(output)
    from_env = os.environ.get(env_var, "").strip()
    if from_env:
        return from_env
    raise NoTargetError(f"give {flag}, --stack-name (or ${STACK_ENV}) or set {env_var}")


def resource_name(
    args: argparse.Namespace, explicit: str | None, output: str, env_var: str, flag: str
) -> str:
    """:func:`resolve_name` for a synchronous command (one ``DescribeStacks`` when needed)."""
    return asyncio.run(resolve_name(Target.from_args(args), explicit, output, env_var, flag))


def add_target_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--stack-name``, ``--profile``, ``--region`` and ``--endpoint-url``."""
    group = parser.add_argument_group("deployment")
    group.add_argument(
        "--stack-name",
        metavar="NAME",
        default=os.environ.get(STACK_ENV) or None,
        help=f"the deployed stack whose outputs name the resources (default: ${STACK_ENV})",
    )
    group.add_argument(
        "--profile", metavar="NAME", default=None, help="AWS profile (default: $AWS_PROFILE)"
    )
    group.add_argument(
        "--region",
        default=None,
        help="AWS region (default: $AWS_REGION / $AWS_DEFAULT_REGION / AWS config)",
    )
    group.add_argument(
        "--endpoint-url",
        default=None,
        metavar="URL",
        help="AWS endpoint, e.g. a local emulator (default: $AWS_ENDPOINT_URL)",
    )
