"""The local stack: moto in server mode, provisioned from the template's plan.

Everything the cloud stack has that the emulator can do is created for real on moto: buckets
with EventBridge notifications, tables with their key schemas and TTL, rules on the bus with
their exact patterns. The one thing moto cannot do — run the Lambda functions — is replaced by
one SQS queue per function as the rule target (Lambda's queue of asynchronous invocations) and
one DLQ per function (its OnFailure destination), drained and fed by the
:mod:`~stori_pipeline.local.dispatcher`, which retries with the template's retry budget.

moto runs in this process (``ThreadedMotoServer``) so the SES backend's sent messages can be
read back and written to ``.eml`` files: moto does not deliver mail. What is read from moto's
backends directly is copied in one C-level step (``list(...)``, a slice): the server's request
threads mutate those containers concurrently, and iterating one while a request inserts into
it is what raised "dictionary changed size during iteration" (moto's own ``DescribeTable``
does exactly that, so the progress bar no longer calls it).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import aioboto3

from stori_pipeline.local.template import LOCAL_ACCOUNT_ID, LOCAL_REGION, StackPlan

__all__ = [
    "LOCAL_CREDENTIALS",
    "RETRY_DELAY_SECONDS",
    "FunctionQueues",
    "LocalStack",
    "moto_server",
    "provision",
    "sent_raw_emails",
    "table_item_count",
    "tapped_queues",
]

# moto accepts any credentials; fixed fake ones keep a real profile from ever being used.
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": LOCAL_REGION,
    "AWS_REGION": LOCAL_REGION,
}
# The dispatcher deletes a message as soon as it has it (see dispatcher's module doc); the
# visibility timeout and redrive policy only matter to a consumer that does not, e.g. a person
# reading the queue by hand. A failed invocation is retried after RETRY_DELAY_SECONDS, so
# retries and dead-lettering take seconds locally (Lambda backs off for minutes).
COLD_START_ALLOWANCE_SECONDS = 30
RETRY_DELAY_SECONDS = 1


@dataclass(frozen=True, slots=True)
class FunctionQueues:
    """The queue a function's rules deliver to and the DLQ its failures end in."""

    function: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    max_receive_count: int


@dataclass(frozen=True, slots=True)
class LocalStack:
    """A provisioned local stack: the endpoint, the plan and each function's queues."""

    endpoint: str
    plan: StackPlan
    queues: Mapping[str, FunctionQueues]
    rule_names: tuple[str, ...]
    client_env: Mapping[str, str] = field(default_factory=dict)
    state_machines: Mapping[str, str] = field(default_factory=dict)  # logical id -> ARN

    def function_env(self, logical_id: str) -> dict[str, str]:
        """A function's full environment: the template's variables plus emulator access."""
        function = self.plan.function(logical_id)
        return {
            **function.environment,
            **self.client_env,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(function.timeout_seconds),
        }


@contextmanager
def moto_server(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run moto's HTTP server in this process for the duration; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - moto is the `local` extra

    # werkzeug logs every request at INFO; the demo's own log says what happened.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # Its ASL parser warns, per state machine created, that it ignores ToleratedFailurePercentage:
    # ours is 0, which the bridge (local/stepfunctions.py) applies itself.
    logging.getLogger("moto.stepfunctions.parser.asl.parse.preprocessor").setLevel(logging.ERROR)
    _cache_jsonpath_parsing()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        bound_host, bound_port = server.get_host_and_port()
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.stop()


def _cache_jsonpath_parsing() -> None:
    """Parse each JSONPath once in this process, not once per routed event.

    moto's EventBridge builds a fresh jsonpath-ng parser (a PLY grammar) for each of the 8
    paths of its default input template, for every event and target: 5,000 summary events
    spent minutes of the emulator's CPU there. A parsed path is an immutable expression,
    so caching by its text changes nothing else.
    """
    try:
        from jsonpath_ng import ext  # noqa: PLC0415 - moto's dependency, the `local` extra
    except ImportError:  # pragma: no cover - moto's events need it
        return
    parse = getattr(ext, "parse", None)
    if parse is not None and not hasattr(parse, "cache_info"):
        setattr(ext, "parse", functools.lru_cache(maxsize=256)(parse))  # noqa: B010


# Queue ARN -> what to do with a message sent to it, while a dispatcher runs (tapped_queues).
_TAPS: dict[str, Callable[[str, str], None]] = {}


def _install_queue_tap() -> None:
    """Let a dispatcher take messages at the moment the in-process emulator enqueues them."""
    from moto.sqs.models import Queue  # noqa: PLC0415 - the `local` extra

    if getattr(Queue.add_message, "stori_tap", False):
        return
    original = Queue.add_message

    def add_message(self: Any, message: Any) -> None:
        tap = _TAPS.get(self.queue_arn)
        if tap is None or self.fifo_queue:
            original(self, message)
            return
        tap(message.id, message.body)

    add_message.stori_tap = True  # type: ignore[attr-defined]
    Queue.add_message = add_message  # type: ignore[method-assign]


@contextmanager
def tapped_queues(taps: Mapping[str, Callable[[str, str], None]]) -> Iterator[None]:
    """While open, messages sent to these queues (by ARN) go to ``taps``, not into the queue.

    Only for the emulator running in this process; one elsewhere is left alone (its queues
    are read over HTTP). Why: moto's queue is a list it scans on every send, receive and
    delete, and a receive computes every queue attribute (three more scans) per message, so
    draining costs more than filling — with thousands of summary events a queue never
    emptied and the run went quadratic. Taken at the door, each message costs O(1).
    A callback runs on one of the emulator's request threads.
    """
    _install_queue_tap()
    _TAPS.update(taps)
    try:
        yield
    finally:
        for arn in taps:
            _TAPS.pop(arn, None)


def client_environment(endpoint: str) -> dict[str, str]:
    """The variables that point boto3, aioboto3 and Powertools at the emulator."""
    return {
        **LOCAL_CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint,
        # Like Lambda: no shared config or credentials file can redirect a function.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


@functools.cache
def session() -> aioboto3.Session:
    """An aioboto3 session with the emulator's fake credentials (never a real profile).

    One per process: each new session re-reads botocore's data files for its clients.
    """
    return aioboto3.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=LOCAL_REGION,
    )


@asynccontextmanager
async def clients(endpoint: str, *services: str) -> AsyncIterator[list[Any]]:
    """Open aioboto3 clients for ``services`` on the emulator; closed on exit."""
    aws = session()
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(aws.client(service, endpoint_url=endpoint))
            for service in services
        ]


async def provision(endpoint: str, plan: StackPlan) -> LocalStack:
    """Create every resource of ``plan`` on the emulator at ``endpoint``."""
    async with clients(endpoint, "s3", "dynamodb", "sqs", "events") as (s3, dynamodb, sqs, events):
        for bucket in plan.buckets:
            await s3.create_bucket(Bucket=bucket.name)
            if bucket.eventbridge:
                await s3.put_bucket_notification_configuration(
                    Bucket=bucket.name,
                    NotificationConfiguration={"EventBridgeConfiguration": {}},
                )
        for table in plan.tables:
            arguments: dict[str, Any] = {
                "TableName": table.name,
                "KeySchema": list(table.key_schema),
                "AttributeDefinitions": list(table.attribute_definitions),
                "BillingMode": "PAY_PER_REQUEST",
            }
            if table.global_secondary_indexes:
                arguments["GlobalSecondaryIndexes"] = list(table.global_secondary_indexes)
            await dynamodb.create_table(**arguments)
            if table.ttl_attribute:
                await dynamodb.update_time_to_live(
                    TableName=table.name,
                    TimeToLiveSpecification={
                        "Enabled": True,
                        "AttributeName": table.ttl_attribute,
                    },
                )
        queues: dict[str, FunctionQueues] = {}
        for function in plan.functions:
            queues[function.logical_id] = await _function_queues(sqs, function.logical_id, plan)
        rule_names: list[str] = []
        for rule in plan.rules:
            await events.put_rule(
                Name=rule.name,
                EventBusName=rule.event_bus,
                EventPattern=json.dumps(rule.pattern),
                State="ENABLED",
            )
            await events.put_targets(
                Rule=rule.name,
                EventBusName=rule.event_bus,
                Targets=[{"Id": rule.function, "Arn": queues[rule.function].queue_arn}],
            )
            rule_names.append(rule.name)
        state_machines = await _state_machines(endpoint, plan, sqs)
    return LocalStack(
        endpoint=endpoint,
        plan=plan,
        queues=queues,
        rule_names=tuple(rule_names),
        client_env=client_environment(endpoint),
        state_machines=state_machines,
    )


async def _state_machines(endpoint: str, plan: StackPlan, sqs: Any) -> dict[str, str]:
    """Create the template's state machines (moto executes them; see ``local.stepfunctions``)."""
    if not plan.state_machines:
        return {}
    from stori_pipeline.local.stepfunctions import (  # noqa: PLC0415 - only with a workflow
        create_state_machine,
        enable_execution,
    )

    await enable_execution(endpoint)  # before any state machine exists
    created: dict[str, str] = {}
    async with clients(endpoint, "stepfunctions") as (sfn,):
        for machine in plan.state_machines:
            for queue in machine.queues:
                await sqs.create_queue(QueueName=queue)
            created[machine.logical_id] = await create_state_machine(
                sfn,
                name=machine.name,
                definition=machine.definition_path.read_text(encoding="utf-8"),
                substitutions=machine.substitutions,
            )
    return created


async def _function_queues(sqs: Any, logical_id: str, plan: StackPlan) -> FunctionQueues:
    function = plan.function(logical_id)
    base = f"{plan.stack_name}-{logical_id.lower()}"
    dlq_url = (await sqs.create_queue(QueueName=f"{base}-dlq"))["QueueUrl"]
    dlq_arn = await _queue_arn(sqs, dlq_url)
    queue_url = (
        await sqs.create_queue(
            QueueName=f"{base}-invocations",
            Attributes={
                "VisibilityTimeout": str(function.timeout_seconds + COLD_START_ALLOWANCE_SECONDS),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": function.max_receive_count}
                ),
            },
        )
    )["QueueUrl"]
    return FunctionQueues(
        function=logical_id,
        queue_url=queue_url,
        queue_arn=await _queue_arn(sqs, queue_url),
        dlq_url=dlq_url,
        max_receive_count=function.max_receive_count,
    )


async def _queue_arn(sqs: Any, url: str) -> str:
    attributes = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def sent_raw_emails(since: int = 0) -> list[tuple[str, list[str], str]]:
    """Messages moto's SES backend accepted, as (message id, destinations, raw MIME).

    SES v1 and v2 share one backend in moto; a simple (non-raw) message is rebuilt as MIME so a
    person can still open it.
    """
    from email.message import EmailMessage  # noqa: PLC0415

    from moto.ses.models import RawMessage, ses_backends  # noqa: PLC0415 - the `local` extra

    backend = ses_backends[LOCAL_ACCOUNT_ID][LOCAL_REGION]
    result: list[tuple[str, list[str], str]] = []
    # One slice: a C-level copy, safe against the request threads appending to the list.
    for message in backend.sent_messages[since:]:
        if isinstance(message, RawMessage):
            result.append((message.id, list(message.destinations), message.raw_data))
            continue
        body = getattr(message, "body", "")
        rebuilt = EmailMessage()
        rebuilt["From"] = message.source
        destinations = getattr(message, "destinations", {}) or {}
        to = destinations.get("ToAddresses", []) if isinstance(destinations, dict) else []
        rebuilt["To"] = ", ".join(to)
        rebuilt["Subject"] = getattr(message, "subject", "")
        rebuilt.set_content(body, subtype="html" if "<" in body else "plain")
        result.append((message.id, list(to), rebuilt.as_string()))
    return result


def sent_email_count() -> int:
    """How many messages moto's SES backend holds (to read only the new ones later)."""
    from moto.ses.models import ses_backends  # noqa: PLC0415 - the `local` extra

    return len(ses_backends[LOCAL_ACCOUNT_ID][LOCAL_REGION].sent_messages)


def table_item_count(table_name: str) -> int | None:
    """Items in a table of the emulator running in this process (``None``: not here).

    A progress display's count, read without a request: ``list(dict.values())`` copies in
    one step the request threads cannot interleave with, and ``len`` of each partition is
    atomic, so this never iterates a dict that is being written to.
    """
    from moto.dynamodb.models import dynamodb_backends  # noqa: PLC0415 - the `local` extra

    backend = dynamodb_backends[LOCAL_ACCOUNT_ID][LOCAL_REGION]
    table = backend.tables.get(table_name)
    if table is None:
        return None
    partitions = list(table.items.values())
    return sum(map(len, partitions)) if table.has_range_key else len(partitions)


def process_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with ``overrides`` applied (for a function's worker)."""
    return {**os.environ, **overrides}
