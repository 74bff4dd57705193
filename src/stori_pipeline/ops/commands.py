"""``stori-pipeline reprocess`` and ``stori-pipeline status``: thin argument handling."""

from __future__ import annotations

import argparse
import json
import sys

from stori_pipeline.ops import deployment
from stori_pipeline.ops._cli import EXIT_FAILED, EXIT_OK, run

__all__ = ["register"]


# The commands' own modules import the AWS clients (aiobotocore, ~23 MB): only when run, so
# every other command (summarize, on a file of 50,000 accounts) does without them.


def _reprocess(args: argparse.Namespace) -> int:
    from stori_pipeline.ops.reprocess import reprocess  # noqa: PLC0415 - see above

    async def work() -> int:
        target = deployment.Target.from_args(args)
        stack = await target.deployment()
        async with (
            target.client("s3") as s3,
            target.client("dynamodb") as dynamodb,
            target.client("lambda") as lambda_client,
        ):
            report = await reprocess(
                s3=s3,
                dynamodb=dynamodb,
                lambda_client=lambda_client,
                stack=stack,
                url=args.url,
                dry_run=args.dry_run,
                force=args.force,
            )
        if args.json:
            sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False) + "\n")
        else:
            print("\n".join(report.statement()))
        return EXIT_OK

    return run("reprocess", work())


def _status(args: argparse.Namespace) -> int:
    from stori_pipeline.ops.status import collect_status  # noqa: PLC0415 - see above

    async def work() -> int:
        target = deployment.Target.from_args(args)
        stack = await target.deployment()
        async with target.client("dynamodb") as dynamodb, target.client("sqs") as sqs:
            report = await collect_status(
                dynamodb=dynamodb, sqs=sqs, stack=stack, limit=args.limit, peek=args.peek
            )
        if args.json:
            sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False) + "\n")
        else:
            print("\n".join(report.lines()))
        return EXIT_FAILED if args.check and report.dead_lettered else EXIT_OK

    return run("status", work())


def _count(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 0 and 1000")
    return value


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``reprocess`` and ``status``."""
    again = commands.add_parser(
        "reprocess",
        help="run an already-processed upload of a deployed stack again",
        description=(
            "Delete the idempotency records of the object's current version and of its "
            "emails, then send the ingest function the 'Object Created' event S3 sent. The "
            "rows are rewritten under the same keys, the summary events published again and "
            "every account holder emailed again."
        ),
    )
    again.add_argument("url", metavar="s3://BUCKET/KEY", help="an upload under incoming/")
    again.add_argument(
        "--dry-run", action="store_true", help="say what would be removed and sent; change nothing"
    )
    again.add_argument(
        "--force", action="store_true", help="even while a run of the object is in progress"
    )
    again.add_argument("--json", action="store_true", help="print one JSON object")
    deployment.add_target_options(again)
    again.set_defaults(command=_reprocess)

    status = commands.add_parser(
        "status",
        help="recent imports of a deployed stack and what waits in its dead-letter queues",
        description=(
            "List recent imports with their outcome (from the idempotency table and the "
            "dead-letter queues) and every dead-letter queue's messages. Reading a queue "
            "leaves its messages in it."
        ),
    )
    status.add_argument("--limit", type=_count, default=20, help="imports to list")
    status.add_argument("--peek", type=_count, default=10, help="messages to describe per queue")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.add_argument(
        "--check", action="store_true", help="exit status 1 when any dead-letter queue is not empty"
    )
    deployment.add_target_options(status)
    status.set_defaults(command=_status)
