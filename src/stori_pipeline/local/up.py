"""``stori-pipeline local up``: the local stack kept running until Ctrl-C or SIGTERM.

It prints how to use the stack from outside — the endpoint, bucket names, and commands that
run exactly as printed (the emulator's fake credentials and region are part of each line) —
and writes ``env.local.json`` for ``sam local invoke --env-vars``. The dispatcher keeps
delivering; every invocation's outcome is printed as it ends, with the ``.eml`` and ``.html``
of exactly the email that invocation sent.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from stori_pipeline.local.demo import (
    DEFAULT_ACCOUNT,
    LocalSession,
    SentEmail,
    find_template,
    local_plan,
)
from stori_pipeline.local.outcomes import Described
from stori_pipeline.local.stack import LOCAL_CREDENTIALS, LocalStack, moto_server
from stori_pipeline.local.template import StackPlan
from stori_pipeline.local.workflows import workflow_bridge
from stori_pipeline.terminal import visible

__all__ = ["aws_command_prefix", "env_file_text", "run_up", "sam_env_vars"]

# What a container started by `sam local invoke` calls the machine it runs on.
DOCKER_HOST = "host.docker.internal"
# Addresses that mean "every interface": a client connects to the loopback instead.
_ANY_ADDRESS = {"0.0.0.0", "::", ""}  # noqa: S104 - compared against, not bound to


def sam_env_vars(
    plan: StackPlan, endpoint: str, host: str = DOCKER_HOST
) -> dict[str, dict[str, str]]:
    """``env.local.json``: each function's variables, pointed at the emulator from Docker.

    ``sam local`` passes only variables the template declares; the template declares
    ``AWS_ENDPOINT_URL`` when its ``LocalEndpointUrl`` parameter is set, hence the printed
    ``--parameter-overrides``. The repository's ``env.local.json`` is this for the default
    port, so ``local up`` and ``sam local invoke --env-vars env.local.json`` agree.
    """
    docker_endpoint = endpoint.replace("127.0.0.1", host).replace("localhost", host)
    # Only declared variables: sam local ignores the rest, and takes credentials from the host.
    return {
        function.logical_id: {**function.environment, "AWS_ENDPOINT_URL": docker_endpoint}
        for function in plan.functions
    }


def env_file_text(plan: StackPlan, endpoint: str) -> str:
    """The text of ``env.local.json`` for a stack served at ``endpoint``."""
    return json.dumps(sam_env_vars(plan, endpoint), indent=2) + "\n"


def aws_command_prefix(endpoint: str) -> str:
    """``VAR=value … aws --endpoint-url URL``: an AWS CLI call that reaches the emulator.

    Without credentials the AWS CLI stops with "Unable to locate credentials" before it
    sends anything; the emulator accepts any, and fixed fake ones keep a real profile from
    ever being used.
    """
    variables = " ".join(
        f"{name}={shlex.quote(LOCAL_CREDENTIALS[name])}"
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    )
    return f"{variables} aws --endpoint-url {shlex.quote(endpoint)}"


def _write_env_file(out_dir: Path, stack: LocalStack, endpoint: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    env_file = out_dir / "env.local.json"
    env_file.write_text(env_file_text(stack.plan, endpoint), "utf-8")
    return env_file


class _Announcer:
    """Prints each invocation's outcome, and the email files it wrote, as plain lines."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def stage(self, text: str) -> None:
        print(visible(text), file=self.out, flush=True)

    def invocation(self, described: Described, sent: SentEmail | None) -> None:
        lines = [described.line()]
        if sent is not None:
            lines.append(f"  email: {sent.eml}")
            if sent.html is not None:
                lines.append(f"  open:  {sent.html}")
        print("\n".join(map(visible, lines)), file=self.out, flush=True)

    def rows_written(self, written: int, total: int) -> None:
        pass


async def run_up(  # noqa: PLR0913 - keyword-only options of one command
    *,
    template: Path | None,
    out_dir: Path,
    port: int,
    out: TextIO,
    accounts: tuple[str, ...] = (DEFAULT_ACCOUNT,),
    host: str = "127.0.0.1",
    parameter_overrides: Sequence[str] = (),
    locale: str | None = None,
) -> int:
    """Provision the stack on ``host:port`` and dispatch until cancelled (Ctrl-C, SIGTERM).

    ``host`` is the address the emulator listens on: ``127.0.0.1`` (this machine only) or,
    for Docker containers that must reach it (``sam local invoke``), ``0.0.0.0``.
    """
    plan = local_plan(template or find_template(), parameter_overrides=parameter_overrides)
    announcer = _Announcer(out)
    with moto_server(host=host, port=port) as bound:
        # The URL a client on this machine uses (a wildcard address is not one to connect to).
        bound_host = bound.rsplit(":", 1)[0].removeprefix("http://")
        endpoint = bound.replace(bound_host, "127.0.0.1") if bound_host in _ANY_ADDRESS else bound
        async with LocalSession.open(
            plan, out_dir=out_dir, endpoint=endpoint, reporter=announcer
        ) as session:
            await session.seed(accounts, locale)
            stack, roles = session.stack, session.roles
            env_file = _write_env_file(out_dir, stack, endpoint)
            bucket = roles.transactions_bucket
            docker_endpoint = sam_env_vars(stack.plan, endpoint)[roles.ingest]["AWS_ENDPOINT_URL"]
            aws = aws_command_prefix(endpoint)
            account = accounts[0]
            reachable = (
                f"listening on {bound_host} (every interface: Docker containers, and anyone on "
                "your network, can reach it)"
                if bound_host in _ANY_ADDRESS
                else f"listening on {bound_host} only (on Linux, Docker needs --host 0.0.0.0)"
            )
            lines = [
                f"local stack '{plan.stack_name}' is up at {endpoint}, {reachable}",
                f"  transactions bucket  {bucket}",
                f"  templates bucket     {roles.templates_bucket}",
                f"  tables               {', '.join(t.name for t in plan.tables)}",
                f"  demo users           {', '.join(sorted(session.users))}",
                "",
                "upload a file (a file with an AccountId column goes straight under incoming/):",
                f"  {aws} s3 cp file.csv s3://{bucket}/incoming/{account}/file.csv",
                f"  {aws} s3 cp accounts.csv s3://{bucket}/incoming/accounts.csv",
                "",
                "with Docker, invoke a function against this emulator:",
                *(
                    f"  sam local invoke {f.logical_id} --env-vars {shlex.quote(str(env_file))} "
                    f"--parameter-overrides LocalEndpointUrl={docker_endpoint} "
                    "--event events/<event>.json"
                    for f in plan.functions
                ),
                "",
                (
                    f"emails are written to {out_dir / 'emails'}; function logs to "
                    f"{out_dir / 'logs'}. Ctrl-C stops."
                ),
            ]
            print("\n".join(lines), file=out, flush=True)
            dispatcher = session.dispatcher(session.runtimes())
            with workflow_bridge(stack, dispatcher, announcer.stage):
                await dispatcher.run()
    return 0
