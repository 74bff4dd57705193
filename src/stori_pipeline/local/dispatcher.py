"""The dispatcher: the part of the Lambda service the emulator cannot play.

Each function's rules deliver to that function's SQS queue (see :mod:`.stack`). The dispatcher
long-polls every queue and invokes the function's handler with the delivered EventBridge event
and a Lambda-like context. Success deletes the message; failure leaves it, so SQS makes it
visible again after the (short) visibility timeout and redelivers it — Lambda's retries — and,
after ``maxReceiveCount`` receives, moto moves it to the function's DLQ.

How a handler runs is a :class:`Runtime`, the dispatcher's one seam:

- :class:`ProcessRuntime` (the default) imports the template's ``Handler`` in warm worker
  processes with exactly that function's environment, like a Lambda execution environment. The
  two functions need different variables (``POWERTOOLS_SERVICE_NAME`` …) and keep module-level
  state (idempotency config, template cache), which one shared process cannot isolate.
- :class:`ThreadRuntime` runs any sync callable in a worker thread (``asyncio.to_thread``: the
  handlers call ``asyncio.run`` themselves). Tests inject failing or recording handlers with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import multiprocessing
import os
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from stori_pipeline.local.stack import RETRY_DELAY_SECONDS, LocalStack, clients
from stori_pipeline.local.template import LOCAL_ACCOUNT_ID, LOCAL_REGION, FunctionPlan

__all__ = [
    "Dispatcher",
    "Invocation",
    "LambdaContext",
    "ProcessRuntime",
    "Runtime",
    "ThreadRuntime",
]

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True, slots=True)
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    aws_request_id: str
    deadline: float  # time.time() when the invocation would time out
    memory_limit_in_mb: int = 1024
    function_version: str = "$LATEST"

    @property
    def invoked_function_arn(self) -> str:
        """The function's (local) ARN."""
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        """Where Lambda would send the logs."""
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        """A stable local log stream name."""
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout."""
        return max(0, int((self.deadline - time.time()) * 1000))


class Runtime(Protocol):
    """Runs one function's handler; raises :class:`InvocationError` when the handler fails."""

    async def invoke(self, event: dict[str, Any], context: LambdaContext) -> None:
        """Invoke the handler once with ``event``."""

    def close(self) -> None:
        """Release workers (called once, when the dispatcher stops)."""


class InvocationError(Exception):
    """The handler raised; ``detail`` is its exception and traceback as text."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail.strip().splitlines()[-1] if detail.strip() else "failed")
        self.detail = detail


class ThreadRuntime:
    """Runs a sync handler in a worker thread of this process."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def invoke(self, event: dict[str, Any], context: LambdaContext) -> None:
        """Invoke the handler in a thread; its exception becomes an ``InvocationError``."""
        try:
            await asyncio.to_thread(self.handler, event, context)
        except Exception as exc:
            raise InvocationError("".join(traceback.format_exception(exc))) from exc

    def close(self) -> None:
        """Nothing to release."""


# --- warm worker processes -------------------------------------------------------------------

_worker_handler: Handler | None = None


def _worker_init(env: dict[str, str], code_dir: str, handler: str, log_path: str | None) -> None:
    """Become a function's execution environment: its env, its logs, its imported handler."""
    global _worker_handler  # noqa: PLW0603 - one handler per worker process, like Lambda
    os.environ.clear()
    os.environ.update(env)
    if log_path is not None:
        # Powertools logs JSON to stdout; the person watching the demo reads a concise log.
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    sys.path.insert(0, code_dir)
    module, attribute = handler.rsplit(".", 1)
    _worker_handler = getattr(importlib.import_module(module), attribute)


def _worker_invoke(event: dict[str, Any], context: LambdaContext) -> str | None:
    """Run the handler; return the failure as text (exceptions may not pickle), or None."""
    assert _worker_handler is not None
    try:
        _worker_handler(event, context)
    except Exception:  # noqa: BLE001 - the failure crosses the process boundary as text
        return traceback.format_exc()
    return None


class ProcessRuntime:
    """Warm worker processes for one function, each with exactly that function's env."""

    def __init__(
        self,
        function: FunctionPlan,
        env: Mapping[str, str],
        *,
        concurrency: int = 2,
        log_path: Path | None = None,
    ) -> None:
        self.function = function
        self._concurrency = concurrency
        self._initargs = (
            dict(env),
            str(function.code_dir),
            function.handler,
            None if log_path is None else str(log_path),
        )
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self._concurrency,
            # spawn, never fork: this process runs moto's server threads.
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=self._initargs,
        )

    async def invoke(self, event: dict[str, Any], context: LambdaContext) -> None:
        """Invoke the handler in a worker process."""
        loop = asyncio.get_running_loop()
        try:
            failure = await loop.run_in_executor(self._pool, _worker_invoke, event, context)
        except BrokenProcessPool as exc:
            # The handler failed to import or its process died: a failed invocation (Lambda
            # reports an init error and retries), with fresh workers for the next attempt.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            raise InvocationError(
                f"{exc}\n{self.function.handler}: the worker failed to start or crashed "
                f"(see {self._initargs[3] or 'its stderr'})"
            ) from exc
        if failure is not None:
            raise InvocationError(failure)

    def close(self) -> None:
        """Stop the workers."""
        self._pool.shutdown(wait=True, cancel_futures=True)


# --- the dispatcher --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invocation:
    """One delivery of one message to one function, and how it ended."""

    function: str
    message_id: str
    attempt: int
    event: dict[str, Any]
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        """Whether the handler returned without raising."""
        return self.error is None


@dataclass(slots=True)
class _FunctionState:
    in_flight: int = 0
    succeeded: set[str] = field(default_factory=set)
    failures: Counter[str] = field(default_factory=Counter)


class Dispatcher:
    """Long-polls each function's queue and invokes its runtime, like Lambda's event source.

    Args:
        stack: the provisioned local stack.
        runtimes: the runtime of each function, by logical id (the seam tests use).
        on_invocation: called after every invocation (for logs and progress).
        concurrency: invocations in flight per function.
    """

    def __init__(
        self,
        stack: LocalStack,
        runtimes: Mapping[str, Runtime],
        *,
        on_invocation: Callable[[Invocation], None] | None = None,
        concurrency: int = 2,
    ) -> None:
        missing = set(stack.queues) - set(runtimes)
        if missing:
            raise ValueError(f"no runtime for {sorted(missing)}")
        self.stack = stack
        self.runtimes = dict(runtimes)
        self.on_invocation = on_invocation
        self.concurrency = concurrency
        self.invocations: list[Invocation] = []
        self._state = {name: _FunctionState() for name in stack.queues}
        self._changed = asyncio.Event()

    def succeeded(self, function: str) -> int:
        """Distinct messages the function processed successfully."""
        return len(self._state[function].succeeded)

    async def run(self, until: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Dispatch until ``until()`` is true (checked whenever work settles), or forever."""
        async with clients(self.stack.endpoint, "sqs") as (sqs,):
            try:
                async with asyncio.TaskGroup() as tasks:
                    pollers = [
                        tasks.create_task(self._poll(sqs, function, tasks))
                        for function in self.stack.queues
                    ]
                    if until is None:
                        await asyncio.gather(*pollers)
                    while until is not None and not await until():
                        self._changed.clear()
                        # Woken by the end of an invocation; the timeout only re-checks the
                        # queues for redeliveries the emulator makes visible on its own.
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._changed.wait(), timeout=0.5)
                    for poller in pollers:
                        poller.cancel()
            finally:
                for runtime in self.runtimes.values():
                    await asyncio.to_thread(runtime.close)

    def in_flight(self) -> int:
        """Invocations running now, over all functions."""
        return sum(s.in_flight for s in self._state.values())

    async def _poll(self, sqs: Any, function: str, tasks: asyncio.TaskGroup) -> None:
        queue = self.stack.queues[function]
        slots = asyncio.Semaphore(self.concurrency)
        while True:
            await slots.acquire()
            try:
                response = await sqs.receive_message(
                    QueueUrl=queue.queue_url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=1,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            except BaseException:
                slots.release()
                raise
            messages = response.get("Messages", [])
            if not messages:
                slots.release()
                self._changed.set()
                continue
            self._state[function].in_flight += 1
            tasks.create_task(self._invoke(sqs, function, messages[0], slots))

    async def _invoke(
        self, sqs: Any, function: str, message: dict[str, Any], slots: asyncio.Semaphore
    ) -> None:
        state = self._state[function]
        plan = self.stack.plan.function(function)
        started = time.monotonic()
        error: str | None = None
        event: dict[str, Any] = {}
        try:
            event = json.loads(message["Body"])
            context = LambdaContext(
                function_name=plan.name,
                aws_request_id=str(uuid.uuid4()),
                deadline=time.time() + plan.timeout_seconds,
            )
            try:
                await self.runtimes[function].invoke(event, context)
            except InvocationError as exc:
                error = exc.detail
                # Lambda retries a failed asynchronous invocation; here SQS redelivers it.
                await sqs.change_message_visibility(
                    QueueUrl=self.stack.queues[function].queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=RETRY_DELAY_SECONDS,
                )
            else:
                await sqs.delete_message(
                    QueueUrl=self.stack.queues[function].queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                )
                state.succeeded.add(message["MessageId"])
        finally:
            state.in_flight -= 1
            slots.release()
        if error is not None:
            state.failures[message["MessageId"]] += 1
        invocation = Invocation(
            function=function,
            message_id=message["MessageId"],
            attempt=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
            event=event,
            error=error,
            seconds=time.monotonic() - started,
        )
        self.invocations.append(invocation)
        if self.on_invocation is not None:
            self.on_invocation(invocation)
        self._changed.set()

    async def queue_depths(self) -> dict[str, tuple[int, int]]:
        """Per function: (messages waiting or in flight in its queue, messages in its DLQ)."""
        names = (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
        depths: dict[str, tuple[int, int]] = {}
        async with clients(self.stack.endpoint, "sqs") as (sqs,):
            for function, queues in self.stack.queues.items():
                main = await sqs.get_queue_attributes(
                    QueueUrl=queues.queue_url, AttributeNames=list(names)
                )
                dlq = await sqs.get_queue_attributes(
                    QueueUrl=queues.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
                )
                depths[function] = (
                    sum(int(main["Attributes"].get(n, 0)) for n in names),
                    int(dlq["Attributes"]["ApproximateNumberOfMessages"]),
                )
        return depths

    def until_settled(self, expected: Mapping[str, int]) -> Callable[[], Awaitable[bool]]:
        """A stop condition: queues empty, nothing running, ``expected`` messages settled.

        Each function in ``expected`` must have settled (succeeded or dead-lettered) at least
        that many messages.
        """

        async def settled() -> bool:
            if self.in_flight():
                return False
            depths = await self.queue_depths()
            if self.in_flight() or any(waiting for waiting, _ in depths.values()):
                return False
            return all(
                self.succeeded(function) + depths[function][1] >= count
                for function, count in expected.items()
            )

        return settled


async def drain_dead_letters(stack: LocalStack) -> dict[str, list[dict[str, Any]]]:
    """Every message in each function's DLQ (the delivered events), removed from the DLQ."""
    result: dict[str, list[dict[str, Any]]] = {}
    async with clients(stack.endpoint, "sqs") as (sqs,):
        for function, queues in stack.queues.items():
            events: list[dict[str, Any]] = []
            while True:
                response = await sqs.receive_message(
                    QueueUrl=queues.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
                )
                messages = response.get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    events.append(json.loads(message["Body"]))
                    await sqs.delete_message(
                        QueueUrl=queues.dlq_url, ReceiptHandle=message["ReceiptHandle"]
                    )
            result[function] = events
    return result
