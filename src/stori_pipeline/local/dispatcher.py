"""The dispatcher: the part of the Lambda service the emulator cannot play.

Each function's rules deliver to that function's SQS queue (see :mod:`.stack`), which plays
Lambda's internal queue of asynchronous invocations. The dispatcher takes each event as the
emulator enqueues it (a tap on the in-process emulator, :func:`~.stack.tapped_queues`; a
receive loop reads anything that reached the queue otherwise) into its own in-memory queue,
and invokes the function's handler with the EventBridge event and a Lambda-like context,
returning what the handler returned. A failed or timed-out invocation is retried after
:data:`RETRY_DELAY_SECONDS` until the template's retry budget is spent; then the event is sent
to the function's DLQ, as Lambda's OnFailure destination does.

Why not leave the messages in SQS and let moto redrive them: moto's queue is a list scanned on
every SendMessage, ReceiveMessage (three more scans per message received) and DeleteMessage,
so a queue holding thousands of summary events made every operation O(queue), draining cost
more than filling, and a 43,000-account file ran at about one email a second.

How a handler runs is a :class:`Runtime`, the dispatcher's one seam:

- :class:`ProcessRuntime` (the default) imports the template's ``Handler`` in warm worker
  processes with exactly that function's environment, like a Lambda execution environment. The
  two functions need different variables (``POWERTOOLS_SERVICE_NAME`` …) and keep module-level
  state (idempotency config, template cache), which one shared process cannot isolate. The
  function's ``Timeout`` is enforced: a worker still running at the deadline is killed (as
  Lambda stops the sandbox) and the invocation fails with Lambda's "Task timed out" message.
- :class:`ThreadRuntime` runs any sync callable in a worker thread (``asyncio.to_thread``: the
  handlers call ``asyncio.run`` themselves). Tests inject failing or recording handlers with it.

:meth:`Dispatcher.invoke` is one synchronous (RequestResponse) invocation of a function, the
building block of both the queue-driven deliveries and any caller that needs a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import os
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from stori_pipeline.local.stack import RETRY_DELAY_SECONDS, LocalStack, clients, tapped_queues
from stori_pipeline.local.template import LOCAL_ACCOUNT_ID, LOCAL_REGION, FunctionPlan
from stori_pipeline.local.worker import plain, worker_main

__all__ = [
    "Dispatcher",
    "Invocation",
    "InvocationError",
    "InvocationTimeoutError",
    "LambdaContext",
    "ProcessRuntime",
    "Runtime",
    "ThreadRuntime",
    "drain_dead_letters",
    "stop_worker_processes",
]

Handler = Callable[[dict[str, Any], Any], Any]

# A cold worker imports the handler (Powertools, aioboto3 …): seconds on a busy machine.
# Lambda gives init 10 s; locally a loaded 2-core machine needs more, and init is not the
# function's Timeout.
INIT_TIMEOUT_SECONDS = 60.0
# How long a stopped worker gets to exit after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    aws_request_id: str
    deadline: float  # time.time() when the invocation would time out
    memory_limit_in_mb: int = 1024
    function_version: str = "$LATEST"
    timeout_seconds: float = 3.0

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

    def started(self) -> LambdaContext:
        """This context with its deadline counted from now (the handler starts running)."""
        return dataclasses.replace(self, deadline=time.time() + self.timeout_seconds)


class Runtime(Protocol):
    """Runs one function's handler and returns its result.

    Raises :class:`InvocationError` when the handler fails and
    :class:`InvocationTimeoutError` when it outlives ``context.timeout_seconds``.
    """

    async def invoke(self, event: dict[str, Any], context: LambdaContext) -> Any:
        """Invoke the handler once with ``event``; return what it returned (JSON data)."""

    def close(self) -> None:
        """Release workers (called once, when the dispatcher stops); must not block long."""


class InvocationError(Exception):
    """The handler raised; ``detail`` is its exception and traceback as text."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail.strip().splitlines()[-1] if detail.strip() else "failed")
        self.detail = detail


class InvocationTimeoutError(InvocationError):
    """The handler ran past the function's timeout and was stopped."""

    def __init__(self, seconds: float) -> None:
        # Lambda's own wording, so logs and searches match the deployed function's.
        super().__init__(f"Task timed out after {seconds:.2f} seconds")


class ThreadRuntime:
    """Runs a sync handler in a worker thread of this process.

    A thread cannot be stopped: at the timeout the invocation fails and the thread is left to
    finish on its own (tests only; the real functions run in :class:`ProcessRuntime`).
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def invoke(self, event: dict[str, Any], context: LambdaContext) -> Any:
        """Invoke the handler in a thread; its exception becomes an ``InvocationError``."""
        context = context.started()
        try:
            async with asyncio.timeout(context.timeout_seconds):
                result = await asyncio.to_thread(self.handler, event, context)
        except TimeoutError as exc:
            raise InvocationTimeoutError(context.timeout_seconds) from exc
        except Exception as exc:
            raise InvocationError("".join(traceback.format_exception(exc))) from exc
        return plain(result)

    def close(self) -> None:
        """Nothing to release."""


# --- warm worker processes -------------------------------------------------------------------


class _Worker:
    """One worker process and the pipe to it."""

    def __init__(self, initargs: tuple[Any, ...]) -> None:
        # spawn, never fork: this process runs moto's server threads.
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=worker_main,
            args=(child, *initargs, os.getpid()),
            daemon=True,
            name="stori-local-worker",
        )
        self.process.start()
        child.close()

    async def receive(self) -> tuple[str, Any]:
        """The worker's next message, awaited without blocking the loop or a thread."""
        loop = asyncio.get_running_loop()
        if not self.conn.poll():
            readable = loop.create_future()
            fd = self.conn.fileno()

            def wake() -> None:
                if not readable.done():
                    readable.set_result(None)

            loop.add_reader(fd, wake)
            try:
                await readable
            finally:
                loop.remove_reader(fd)
        message: tuple[str, Any] = self.conn.recv()
        return message

    def stop(self) -> None:
        """Stop the process now (SIGKILL: a hung handler may ignore anything gentler)."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(STOP_GRACE_SECONDS)
        self.conn.close()


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
        self._initargs = (
            dict(env),
            str(function.code_dir),
            function.handler,
            None if log_path is None else str(log_path),
        )
        self._log = str(log_path) if log_path is not None else "its stderr"
        self._slots = asyncio.Semaphore(concurrency)
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()

    async def _start(self) -> _Worker:
        worker = _Worker(self._initargs)
        self._workers.add(worker)
        try:
            async with asyncio.timeout(INIT_TIMEOUT_SECONDS):
                kind, payload = await worker.receive()
        except TimeoutError as exc:
            self._discard(worker)
            raise InvocationError(
                f"{self.function.handler}: init took over {INIT_TIMEOUT_SECONDS:.0f} s"
            ) from exc
        except (EOFError, OSError) as exc:
            self._discard(worker)
            raise InvocationError(
                f"{self.function.handler}: the worker exited during init (see {self._log})"
            ) from exc
        except BaseException:
            self._discard(worker)
            raise
        if kind != "ready":
            self._discard(worker)
            raise InvocationError(str(payload))
        return worker

    def _discard(self, worker: _Worker) -> None:
        self._workers.discard(worker)
        worker.stop()

    async def invoke(self, event: dict[str, Any], context: LambdaContext) -> Any:
        """Invoke the handler in a warm worker (a new one when none is idle)."""
        async with self._slots:
            worker = self._idle.pop() if self._idle else await self._start()
            context = context.started()
            try:
                async with asyncio.timeout(context.timeout_seconds):
                    worker.conn.send((event, context))
                    kind, payload = await worker.receive()
            except TimeoutError as exc:
                # Lambda stops the sandbox of a timed-out invocation; so does this.
                self._discard(worker)
                raise InvocationTimeoutError(context.timeout_seconds) from exc
            except (EOFError, OSError) as exc:
                code = worker.process.exitcode
                self._discard(worker)
                raise InvocationError(
                    f"{self.function.handler}: the worker process exited (code {code}) "
                    f"during the invocation (see {self._log})"
                ) from exc
            except BaseException:
                # Cancelled (Ctrl-C, SIGTERM, the dispatcher stopping): do not leave the
                # handler running in a process nobody will ever ask for its answer.
                self._discard(worker)
                raise
            self._idle.append(worker)
        if kind == "error":
            raise InvocationError(str(payload))
        return payload

    def close(self) -> None:
        """Stop every worker, busy or idle, at once."""
        workers, self._workers, self._idle = list(self._workers), set(), []
        for worker in workers:
            if worker.process.is_alive():
                worker.process.kill()
        for worker in workers:
            worker.stop()


def stop_worker_processes() -> None:
    """Leave no process behind when the local stack exits.

    Kills any worker still running (each runtime normally has) and then stops
    multiprocessing's resource tracker, which the first spawned worker started: left alone,
    it only notices this process has gone after the fact and outlives it for a moment.
    """
    from multiprocessing import resource_tracker  # noqa: PLC0415 - only needed at exit

    for child in multiprocessing.active_children():
        child.kill()
        child.join(STOP_GRACE_SECONDS)
    # No public API stops it; ``_stop`` (3.8+) closes its pipe and waits for it to exit.
    stop = getattr(resource_tracker._resource_tracker, "_stop", None)  # noqa: SLF001
    if callable(stop):
        stop()


# --- the dispatcher --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invocation:
    """One delivery of one event to one function, and how it ended.

    ``result`` is what the handler returned (JSON data) when it did not fail; ``error`` the
    failure's traceback (or Lambda's timeout message) when it did. ``attempt`` counts from 1;
    after the ``max_attempts``-th failure the event is dead-lettered.
    """

    function: str
    message_id: str
    attempt: int
    event: dict[str, Any]
    error: str | None
    seconds: float
    result: Any = None
    max_attempts: int = 1
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """Whether the handler returned without raising."""
        return self.error is None

    @property
    def error_message(self) -> str | None:
        """The last line of the failure (the exception's type and message)."""
        if self.error is None:
            return None
        lines = self.error.strip().splitlines()
        return lines[-1] if lines else "failed"

    @property
    def dead_lettered(self) -> bool:
        """This failure spent the retry budget: the event went to the function's DLQ."""
        return self.error is not None and self.attempt >= self.max_attempts


@dataclass(frozen=True, slots=True)
class _Delivery:
    message_id: str
    event: dict[str, Any]
    attempt: int = 1


@dataclass(slots=True)
class _FunctionState:
    inbox: asyncio.Queue[_Delivery] = field(default_factory=asyncio.Queue)
    in_flight: int = 0
    retrying: int = 0
    succeeded: set[str] = field(default_factory=set)
    dead: int = 0


class Dispatcher:
    """Takes each function's events off its queue and invokes its runtime, like Lambda.

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
        on_invocation: Callable[[Invocation], object] | None = None,
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
        self._retries: set[asyncio.Task[None]] = set()
        self._sqs: Any = None

    def succeeded(self, function: str) -> int:
        """Distinct messages the function processed successfully."""
        return len(self._state[function].succeeded)

    def dead_lettered(self, function: str) -> int:
        """Events of the function sent to its DLQ after the last retry failed."""
        return self._state[function].dead

    def in_flight(self) -> int:
        """Invocations running, queued here or waiting to be retried, over all functions."""
        return sum(s.in_flight + s.retrying + s.inbox.qsize() for s in self._state.values())

    async def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """Invoke ``function`` (a logical id) once, synchronously; return its result.

        The context carries the template's ``Timeout``, which the runtime enforces.

        Raises:
            InvocationError: the handler failed (``InvocationTimeoutError``: timed out).
        """
        plan = self.stack.plan.function(function)
        context = LambdaContext(
            function_name=plan.name,
            aws_request_id=str(uuid.uuid4()),
            deadline=time.time() + plan.timeout_seconds,
            timeout_seconds=float(plan.timeout_seconds),
        )
        return await self.runtimes[function].invoke(event, context)

    async def run(self, until: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Dispatch until ``until()`` is true (checked whenever work settles), or forever.

        Cancelling it (Ctrl-C, SIGTERM) stops every worker process, busy ones included.
        """
        loop = asyncio.get_running_loop()
        taps = {
            queues.queue_arn: self._tap(loop, function)
            for function, queues in self.stack.queues.items()
        }
        async with clients(self.stack.endpoint, "sqs") as (sqs,):
            self._sqs = sqs
            try:
                # Events the in-process emulator routes to a function arrive through its tap;
                # the receive loops read whatever reached a queue otherwise.
                with tapped_queues(taps):
                    await self._dispatch(sqs, until)
            finally:
                self._sqs = None
                for retry in self._retries:
                    retry.cancel()
                for runtime in self.runtimes.values():
                    runtime.close()

    async def _dispatch(self, sqs: Any, until: Callable[[], Awaitable[bool]] | None) -> None:
        async with asyncio.TaskGroup() as tasks:
            workers = [
                tasks.create_task(self._receive(sqs, function)) for function in self.stack.queues
            ] + [
                tasks.create_task(self._work(sqs, function))
                for function in self.stack.queues
                for _ in range(self.concurrency)
            ]
            if until is None:
                await asyncio.gather(*workers)
            while until is not None and not await until():
                self._changed.clear()
                # Woken when an event arrives or an invocation ends; the timeout re-checks
                # the queues for events that reached them some other way.
                # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the inner
                # result when a cancellation (Ctrl-C) arrives just as the event is set —
                # with events flowing, that swallowed the stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self._changed.wait()
            for worker in workers:
                worker.cancel()

    def _tap(self, loop: asyncio.AbstractEventLoop, function: str) -> Callable[[str, str], None]:
        """A callback for the emulator's request thread: hand the message to this loop."""

        def arrived(message_id: str, body: str) -> None:
            loop.call_soon_threadsafe(self._arrived, function, message_id, body)

        return arrived

    def _arrived(self, function: str, message_id: str, body: str) -> None:
        try:
            event = json.loads(body)
        except ValueError:
            event = {"body": body}
        self._state[function].inbox.put_nowait(_Delivery(message_id, event))
        self._changed.set()

    async def _receive(self, sqs: Any, function: str) -> None:
        """Move the function's queued events into its inbox as they arrive."""
        queue_url = self.stack.queues[function].queue_url
        while True:
            response = await sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            messages = response.get("Messages", [])
            if not messages:
                self._changed.set()
                continue
            for message in messages:
                self._arrived(function, message["MessageId"], message["Body"])
            await sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(messages)
                ],
            )

    async def _work(self, sqs: Any, function: str) -> None:
        state = self._state[function]
        while True:
            delivery = await state.inbox.get()
            state.in_flight += 1
            try:
                await self._deliver(sqs, function, delivery)
            finally:
                state.in_flight -= 1
                self._changed.set()

    async def _deliver(self, sqs: Any, function: str, delivery: _Delivery) -> None:
        state = self._state[function]
        queues = self.stack.queues[function]
        started = time.monotonic()
        result: Any = None
        error: str | None = None
        try:
            result = await self.invoke(function, delivery.event)
        except InvocationError as exc:
            error = exc.detail
        invocation = Invocation(
            function=function,
            message_id=delivery.message_id,
            attempt=delivery.attempt,
            event=delivery.event,
            error=error,
            seconds=time.monotonic() - started,
            result=result,
            max_attempts=queues.max_receive_count,
            timed_out=error is not None and error.startswith("Task timed out"),
        )
        if error is None:
            state.succeeded.add(delivery.message_id)
        elif invocation.dead_lettered:
            # Lambda's OnFailure destination: the event, with why it failed.
            await sqs.send_message(
                QueueUrl=queues.dlq_url,
                MessageBody=json.dumps(delivery.event),
                MessageAttributes={
                    "ErrorMessage": {
                        "DataType": "String",
                        "StringValue": (invocation.error_message or "failed")[:1024],
                    },
                    "Attempts": {"DataType": "Number", "StringValue": str(delivery.attempt)},
                },
            )
            state.dead += 1
        else:
            self._retry_later(function, dataclasses.replace(delivery, attempt=delivery.attempt + 1))
        self.invocations.append(invocation)
        if self.on_invocation is not None:
            self.on_invocation(invocation)

    def _retry_later(self, function: str, delivery: _Delivery) -> None:
        state = self._state[function]
        state.retrying += 1

        async def later() -> None:
            try:
                # Lambda backs off for minutes between attempts; locally seconds will do.
                await asyncio.sleep(RETRY_DELAY_SECONDS)
                state.inbox.put_nowait(delivery)
            finally:
                state.retrying -= 1
                self._changed.set()

        task = asyncio.create_task(later())
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def queue_depths(self, sqs: Any = None) -> dict[str, tuple[int, int]]:
        """Per function: (events waiting in its SQS queue or here, messages in its DLQ)."""
        if sqs is None:
            async with clients(self.stack.endpoint, "sqs") as (client,):
                return await self.queue_depths(client)
        names = (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
        depths: dict[str, tuple[int, int]] = {}
        for function, queues in self.stack.queues.items():
            main = await sqs.get_queue_attributes(
                QueueUrl=queues.queue_url, AttributeNames=list(names)
            )
            dlq = await sqs.get_queue_attributes(
                QueueUrl=queues.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
            )
            state = self._state[function]
            depths[function] = (
                sum(int(main["Attributes"].get(n, 0)) for n in names)
                + state.inbox.qsize()
                + state.retrying,
                int(dlq["Attributes"]["ApproximateNumberOfMessages"]),
            )
        return depths

    def until_settled(self, expected: Mapping[str, int]) -> Callable[[], Awaitable[bool]]:
        """A stop condition: queues empty, nothing running, ``expected`` events settled.

        Each function in ``expected`` must have settled (succeeded or dead-lettered) at least
        that many events.
        """

        async def settled() -> bool:
            if self.in_flight():
                return False
            if not all(
                self.succeeded(function) + self.dead_lettered(function) >= count
                for function, count in expected.items()
            ):
                return False
            # The running dispatcher's client: a new one per check would cost more than it.
            depths = await self.queue_depths(self._sqs)
            return not self.in_flight() and not any(waiting for waiting, _ in depths.values())

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
