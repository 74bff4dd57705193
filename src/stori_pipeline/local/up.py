"""``stori-pipeline local up``: the local stack kept running until Ctrl-C.

It prints how to use the stack from outside (the endpoint, bucket names, an ``aws s3 cp``
command) and writes ``env.local.json`` for ``sam local invoke --env-vars``; the dispatcher keeps
delivering, and every email SES accepts is written under ``out/emails`` as it is sent.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TextIO

from stori_pipeline.local.demo import (
    DEFAULT_ACCOUNT,
    LocalSession,
    find_template,
    local_plan,
)
from stori_pipeline.local.dispatcher import Dispatcher, Invocation
from stori_pipeline.local.stack import LocalStack, moto_server
from stori_pipeline.local.template import StackPlan
from stori_pipeline.terminal import visible

__all__ = ["env_file_text", "run_up", "sam_env_vars"]

# What a container started by `sam local invoke` calls the machine it runs on.
DOCKER_HOST = "host.docker.internal"


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


def _write_env_file(out_dir: Path, stack: LocalStack) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    env_file = out_dir / "env.local.json"
    env_file.write_text(env_file_text(stack.plan, stack.endpoint), "utf-8")
    return env_file


async def run_up(
    *,
    template: Path | None,
    out_dir: Path,
    port: int,
    out: TextIO,
    accounts: tuple[str, ...] = (DEFAULT_ACCOUNT,),
) -> int:
    """Provision the stack on ``port`` and dispatch until cancelled (Ctrl-C)."""
    plan = local_plan(template or find_template())
    with moto_server(host="127.0.0.1", port=port) as endpoint:
        async with LocalSession.open(plan, out_dir=out_dir, endpoint=endpoint) as session:
            await session.seed(accounts)
            stack, roles = session.stack, session.roles
            env_file = _write_env_file(out_dir, stack)
            bucket = roles.transactions_bucket
            docker_endpoint = sam_env_vars(stack.plan, stack.endpoint)[roles.ingest][
                "AWS_ENDPOINT_URL"
            ]
            account = accounts[0]
            lines = [
                f"local stack '{plan.stack_name}' is up at {endpoint}",
                f"  transactions bucket  {bucket}",
                f"  templates bucket     {roles.templates_bucket}",
                f"  tables               {', '.join(t.name for t in plan.tables)}",
                f"  demo users           {', '.join(sorted(session.users))}",
                "",
                "upload a file (any AWS credentials work, e.g. AWS_ACCESS_KEY_ID=local):",
                (
                    f"  aws --endpoint-url {endpoint} s3 cp file.csv "
                    f"s3://{bucket}/incoming/{account}/file.csv"
                ),
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

            def announce(invocation: Invocation) -> None:
                detail = invocation.event.get("detail", {})
                what = (
                    detail.get("object", {}).get("key")
                    or detail.get("summary", {}).get("accountId")
                    or detail.get("accountId")
                )
                outcome = "ok" if invocation.ok else "failed"
                # The key and account come from uploads: shown literally.
                print(f"{invocation.function} {visible(what)}: {outcome}", file=out, flush=True)
                for sent in session.write_new_emails()[-1:]:
                    if invocation.ok and invocation.function == roles.email:
                        print(f"  email: {visible(sent.eml)}", file=out, flush=True)

            dispatcher = Dispatcher(stack, session.runtimes(), on_invocation=announce)
            await dispatcher.run()
    return 0
