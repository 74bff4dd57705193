"""Execute the template's state machine on moto, with its Lambda tasks calling our functions.

moto 5.2 interprets Amazon States Language when its configuration says so
(:func:`enable_execution`): Task, Pass, Choice, Parallel, Wait, Succeed/Fail, inline and
Distributed Map (with a JSON ``ItemReader`` over S3), Retry and Catch. Without Docker, its
Lambda only echoes its input, so :func:`lambda_bridge` routes every Lambda task of every
execution — ``arn:aws:states:::lambda:invoke`` (``FunctionName``/``Payload``) and the legacy
``arn:aws:lambda:…:function:…`` resource — to a callable we supply::

    def invoke(function_name: str, payload: Any) -> Any: ...

Its return value is the function's result (what Step Functions shows under ``$.Payload``). A
raised exception, or a returned :class:`FunctionFailure`, is the function failing ("Unhandled",
like Lambda's Python runtime: Step Functions sees ``errorType`` as the error name, so
``Retry``/``Catch`` on custom names, ``States.TaskFailed`` and ``States.ALL`` match); a raised
:class:`LambdaServiceError` is the Lambda *service* refusing the call (``Lambda.<code>``, e.g.
``Lambda.ServiceException``). The callable runs in moto's interpreter threads, concurrently
for the children of a Map: it must be thread-safe. :func:`invoker_on_loop` adapts a coroutine
function running on an asyncio loop (the dispatcher's).

The bridge patches moto's private interpreter, so it is kept in :func:`_install` alone, checks
the shapes it relies on first (:class:`MotoInternalsChangedError` names what moved), and moto
is pinned to the exact version it was written against (``MOTO_VERSION``, pyproject.toml).
Three things are patched while a bridge is active, each the smallest seam there is:

1. the Lambda client the interpreter builds (``lambda_eval_utils.boto_client_for``): a
   stand-in whose ``invoke`` calls ours, so no Lambda function need exist in moto;
2. the end of a Distributed Map run: moto 5.2.5 counts failed children but never fails the
   Map, whose output then holds ``null`` for them and the execution *succeeds*. As on AWS, a
   run whose failures exceed ``ToleratedFailureCount``/``ToleratedFailurePercentage`` (both 0
   by default) now fails with ``States.ExceedToleratedFailureThreshold``;
3. optionally, the wait between retries (``retry_delay_scale``): ``Retry`` really sleeps
   ``IntervalSeconds * BackoffRate ** n`` in moto, which a local run may compress.

The rest is public API: :func:`create_state_machine` (with SAM's ``DefinitionSubstitutions``),
:func:`start_execution` (a duplicate name starts nothing) and :func:`wait_for_execution`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import io
import json
import os
import re
import threading
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from stori_pipeline.errors import AwsOperationError, ConfigurationError, StoriPipelineError
from stori_pipeline.local.template import LOCAL_ACCOUNT_ID

__all__ = [
    "MOTO_VERSION",
    "ExecutionOutcome",
    "ExecutionWaitTimeoutError",
    "FunctionFailure",
    "LambdaInvoker",
    "LambdaServiceError",
    "MotoInternalsChangedError",
    "StartedExecution",
    "create_state_machine",
    "enable_execution",
    "execution_arn_for",
    "function_name_of",
    "invoker_on_loop",
    "lambda_bridge",
    "start_execution",
    "substitute_definition",
    "wait_for_execution",
]

# The moto release whose interpreter internals _install was written against (pinned exactly
# in pyproject.toml); the structural checks in _install are what actually guard a change.
MOTO_VERSION = "5.2.5"
LOCAL_STATE_MACHINE_ROLE = f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:role/local-state-machine"
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
_EXCEEDED_CAUSE = "The specified tolerated failure threshold was exceeded"
_PLACEHOLDER = re.compile(r"\$\{([^}!]+)\}")


class LambdaInvoker(Protocol):
    """Runs one Lambda invocation for the interpreter; called from moto's threads."""

    def __call__(self, function_name: str, payload: Any, /) -> Any:
        """Return the function's result, or raise / return a :class:`FunctionFailure`."""


@dataclass(frozen=True, slots=True)
class FunctionFailure:
    """A function that failed: what Lambda returns with ``FunctionError: Unhandled``.

    ``error_type`` becomes the Step Functions error name (matched by ``ErrorEquals``); the
    whole payload (``errorMessage``, ``errorType``, ``stackTrace``) becomes the cause.
    """

    error_type: str
    error_message: str
    stack_trace: tuple[str, ...] = ()

    @classmethod
    def from_exception(cls, exc: BaseException) -> FunctionFailure:
        """The failure Lambda's Python runtime reports for an unhandled exception."""
        return cls(
            error_type=type(exc).__name__,
            error_message=str(exc),
            stack_trace=tuple(traceback.format_tb(exc.__traceback__)),
        )

    def payload(self) -> dict[str, Any]:
        """The error document Lambda returns as the invocation's payload."""
        return {
            "errorMessage": self.error_message,
            "errorType": self.error_type,
            "requestId": str(uuid.uuid4()),
            "stackTrace": list(self.stack_trace),
        }


class LambdaServiceError(StoriPipelineError):
    """Raised by an invoker: the Lambda service refused the call (``Lambda.<code>`` in ASL).

    For example ``LambdaServiceError("TooManyRequestsException", "Rate exceeded", status=429)``
    is retried by a ``Retry`` on ``Lambda.TooManyRequestsException``.
    """

    def __init__(self, code: str, message: str, *, status: int = 500) -> None:
        self.code = code
        self.message = message
        self.status = status
        super().__init__(f"Lambda.{code}: {message}")


class MotoInternalsChangedError(StoriPipelineError):
    """moto's interpreter no longer has the shape the bridge patches; ``problems`` says where."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            "cannot bridge moto's Step Functions interpreter to local functions: "
            + "; ".join(self.problems)
            + f" (the bridge was written for moto {MOTO_VERSION}, pinned in pyproject.toml;"
            " update src/stori_pipeline/local/stepfunctions.py before moving the pin)"
        )


class ExecutionWaitTimeoutError(StoriPipelineError):
    """An execution was still running when :func:`wait_for_execution` gave up."""

    def __init__(self, execution_arn: str, seconds: float) -> None:
        self.execution_arn = execution_arn
        self.seconds = seconds
        super().__init__(f"{execution_arn} still running after {seconds:g} s")


@dataclass(frozen=True, slots=True)
class StartedExecution:
    """The execution a StartExecution call names.

    ``already_existed`` is True when Step Functions refused the name because an execution with
    it exists (finished, or running with another input): nothing new was started. A start with
    the same name *and* input while that execution runs is idempotent on AWS (and moto): the
    running execution's ARN comes back and ``already_existed`` is False, yet no second
    execution exists either.
    """

    execution_arn: str
    already_existed: bool


@dataclass(frozen=True, slots=True)
class ExecutionOutcome:
    """How an execution ended, from DescribeExecution."""

    execution_arn: str
    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    # DescribeExecution's fields as returned (dates, map run ARN …), for whoever needs more.
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def succeeded(self) -> bool:
        """Whether the execution ended in SUCCEEDED."""
        return self.status == "SUCCEEDED"


# --- the bridge ------------------------------------------------------------------------------


class _BridgedLambdaClient:
    """Stands in for the boto3 Lambda client moto's interpreter builds for each task."""

    def __init__(self, invoke: LambdaInvoker) -> None:
        self._invoke = invoke

    def invoke(self, **parameters: Any) -> dict[str, Any]:
        """Lambda's Invoke, answered by the invoker: a response shaped as boto3's."""
        raw = parameters.get("Payload")
        payload = json.loads(raw) if raw else {}
        name = function_name_of(str(parameters.get("FunctionName", "")))
        try:
            result = self._invoke(name, payload)
        except LambdaServiceError as exc:
            raise ClientError(
                {
                    "Error": {"Code": exc.code, "Message": exc.message},
                    "ResponseMetadata": {
                        "HTTPStatusCode": exc.status,
                        "RequestId": str(uuid.uuid4()),
                    },
                },
                "Invoke",
            ) from exc
        except Exception as exc:  # noqa: BLE001 - any exception is the function failing
            result = FunctionFailure.from_exception(exc)
        response: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
        if not isinstance(result, FunctionFailure):
            try:
                body = json.dumps(result)
            except (TypeError, ValueError) as exc:
                # What Lambda's Python runtime reports for a result it cannot serialize.
                result = FunctionFailure(
                    "Runtime.MarshalError", f"Unable to marshal response: {exc}"
                )
        if isinstance(result, FunctionFailure):
            response["FunctionError"] = "Unhandled"
            body = json.dumps(result.payload())
        response["Payload"] = io.BytesIO(body.encode())
        return response


def function_name_of(function: str) -> str:
    """The function's name from a name, ``name:qualifier``, or a full or partial ARN."""
    if ":function:" in function:
        function = function.split(":function:", 1)[1]
    return function.split(":", 1)[0]


_bridge_lock = threading.Lock()
_bridge_active = False


@contextlib.contextmanager
def lambda_bridge(invoke: LambdaInvoker, *, retry_delay_scale: float = 1.0) -> Iterator[None]:
    """While active, every Lambda task moto executes in this process calls ``invoke``.

    Args:
        invoke: runs one invocation (see :class:`LambdaInvoker`); must be thread-safe.
        retry_delay_scale: multiplies the interpreter's waits between ``Retry`` attempts
            (1.0 waits as the definition says; 0.0 retries at once).

    moto's interpreter is process-wide, so one bridge at a time: entering a second raises
    ``RuntimeError``. moto must run in this process (``ThreadedMotoServer``).
    """
    global _bridge_active  # noqa: PLW0603 - the patched interpreter is process-wide too
    if retry_delay_scale < 0:
        raise ValueError("retry_delay_scale must be >= 0")
    with _bridge_lock:
        if _bridge_active:
            raise RuntimeError("a Step Functions Lambda bridge is already active in this process")
        restore = _install(invoke, retry_delay_scale)
        _bridge_active = True
    try:
        yield
    finally:
        with _bridge_lock:
            restore()
            _bridge_active = False


def _install(invoke: LambdaInvoker, retry_delay_scale: float) -> Callable[[], None]:
    """Patch moto's interpreter (the only place that does); return the undo."""
    internals = _moto_internals()
    lambda_eval_utils = internals.lambda_eval_utils
    component = internals.DistributedIterationComponent
    retrier_decl = internals.retrier_decl
    original_client_for = lambda_eval_utils.boto_client_for
    original_map_run = component._map_run  # noqa: SLF001
    bridged = _BridgedLambdaClient(invoke)

    def client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        if service == "lambda":
            return bridged
        return original_client_for(
            region=region, service=service, state_credentials=state_credentials
        )

    def map_run_within_tolerance(self: Any, env: Any, eval_input: Any) -> None:
        original_map_run(self, env, eval_input)
        record = eval_input.map_run_record
        failed = record.item_counter.failed.get() + record.item_counter.timed_out.get()
        items = len(env.stack[-1])
        if not _exceeds_tolerance(
            failed, items, record.tolerated_failure_count, record.tolerated_failure_percentage
        ):
            return
        env.stack.pop()
        error = internals.StatesErrorName(
            typ=internals.StatesErrorNameType.StatesExceedToleratedFailureThreshold
        )
        details = {
            "error": error.error_name,
            "cause": f"{_EXCEEDED_CAUSE} ({failed} of {items} items failed)",
        }
        raise internals.FailureEventException(
            failure_event=internals.FailureEvent(
                env=env,
                error_name=error,
                event_type=internals.HistoryEventType.MapRunFailed,
                event_details={"mapRunFailedEventDetails": details},
            )
        )

    lambda_eval_utils.boto_client_for = client_for
    component._map_run = map_run_within_tolerance  # noqa: SLF001
    retrier_decl.time = SimpleNamespace(
        sleep=lambda seconds: time.sleep(seconds * retry_delay_scale)
    )

    def restore() -> None:
        lambda_eval_utils.boto_client_for = original_client_for
        component._map_run = original_map_run  # noqa: SLF001
        retrier_decl.time = time

    return restore


def _moto_internals() -> SimpleNamespace:
    """The parts of moto's interpreter :func:`_install` touches, each checked for its shape."""
    parser = "moto.stepfunctions.parser"
    locations = {
        "lambda_eval_utils": f"{parser}.asl.component.state.exec.state_task.lambda_eval_utils",
        "retrier_decl": f"{parser}.asl.component.common.retry.retrier_decl",
        "DistributedIterationComponent": f"{parser}.asl.component.state.exec.state_map"
        ".iteration.distributed_iteration_component",
        "FailureEvent": f"{parser}.asl.component.common.error_name.failure_event",
        "FailureEventException": f"{parser}.asl.component.common.error_name.failure_event",
        "StatesErrorName": f"{parser}.asl.component.common.error_name.states_error_name",
        "StatesErrorNameType": f"{parser}.asl.component.common.error_name.states_error_name_type",
        "HistoryEventType": f"{parser}.api",
    }
    problems: list[str] = []
    found: dict[str, Any] = {}
    for name, location in locations.items():
        try:
            module = importlib.import_module(location)
        except ImportError:
            problems.append(f"cannot import {location}")
            continue
        # A module patched as a whole is its own entry; anything else is an attribute of it.
        found[name] = module if location.endswith(f".{name}") else getattr(module, name, None)
        if found[name] is None:
            problems.append(f"{location}.{name} is gone")
    if not problems:
        problems = _shape_problems(found)
    if problems:
        raise MotoInternalsChangedError(problems)
    return SimpleNamespace(**found)


def _shape_problems(found: Mapping[str, Any]) -> list[str]:
    """What no longer looks as :func:`_install` expects in moto's interpreter."""
    problems: list[str] = []

    def calls(function: Any, name: str, where: str) -> None:
        if name not in getattr(getattr(function, "__code__", None), "co_names", ()):
            problems.append(f"{where} no longer calls {name}")

    lambda_eval_utils = found["lambda_eval_utils"]
    if not callable(getattr(lambda_eval_utils, "boto_client_for", None)):
        problems.append("lambda_eval_utils.boto_client_for is gone")
    calls(
        getattr(lambda_eval_utils, "_invoke_lambda_function", None),
        "boto_client_for",
        "lambda_eval_utils._invoke_lambda_function",
    )
    map_run_code = getattr(getattr(found["DistributedIterationComponent"], "_map_run", None),
                           "__code__", None)  # fmt: skip
    if map_run_code is None or map_run_code.co_varnames[:3] != ("self", "env", "eval_input"):
        problems.append("DistributedIterationComponent._map_run(self, env, eval_input) changed")
    if getattr(found["retrier_decl"], "time", None) is not time:
        problems.append("retrier_decl no longer imports time")
    calls(
        getattr(getattr(found["retrier_decl"], "RetrierDecl", None), "_eval_body", None),
        "time",
        "RetrierDecl._eval_body",
    )
    for enum, member in (
        ("StatesErrorNameType", "StatesExceedToleratedFailureThreshold"),
        ("HistoryEventType", "MapRunFailed"),
    ):
        if not hasattr(found[enum], member):
            problems.append(f"{enum}.{member} is gone")
    return problems


def _exceeds_tolerance(failed: int, items: int, count: int, percentage: float) -> bool:
    """AWS's rule: the run fails when failures exceed either configured threshold.

    Both default to 0 (no failure tolerated). moto keeps only the values, not whether they were
    written, so a 0 beside a positive other threshold is read as "not set".
    """
    if failed == 0:
        return False
    limits: list[bool] = []
    if count > 0:
        limits.append(failed > count)
    if percentage > 0:
        limits.append(failed * 100 > percentage * max(items, 1))
    return any(limits) if limits else True


def invoker_on_loop(
    loop: asyncio.AbstractEventLoop,
    invoke: Callable[[str, Any], Coroutine[Any, Any, Any]],
    *,
    timeout: float | None = None,
) -> LambdaInvoker:
    """An invoker that runs the coroutine function ``invoke`` on ``loop`` and waits for it.

    moto's interpreter threads block on the result; ``loop`` must keep running meanwhile (it
    does while the caller awaits :func:`wait_for_execution`). ``timeout`` bounds one call
    (``TimeoutError`` then fails the task like any exception).
    """

    def call(function_name: str, payload: Any) -> Any:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("invoker_on_loop called from its own loop would deadlock")
        future: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(
            invoke(function_name, payload), loop
        )
        return future.result(timeout)

    return call


# --- moto configuration and the state machine's API -----------------------------------------


async def enable_execution(endpoint: str) -> None:
    """Make the moto server at ``endpoint`` (in this process) execute state machines.

    Posts ``{"stepfunctions": {"execute_state_machine": true}, "lambda": {"use_docker":
    false}}`` to ``/moto-api/config`` and sets ``MOTO_PORT`` in this process's environment:
    the interpreter reaches S3 (``ItemReader``) and other services at
    ``http://localhost:$MOTO_PORT``, reading the variable at each call. The setting is
    server-wide and chooses moto's Step Functions backend: state machines created before it
    are not seen after it, so call this before creating any.
    """
    parts = urlsplit(endpoint)
    if parts.scheme not in {"http", "https"} or parts.port is None:
        raise ConfigurationError([f"moto endpoint must be http(s)://host:port, got {endpoint!r}"])
    body = json.dumps(
        {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        f"{endpoint.rstrip('/')}/moto-api/config", data=body, method="POST"
    )

    def post() -> None:
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - checked above
            pass

    await asyncio.to_thread(post)
    os.environ["MOTO_PORT"] = str(parts.port)


def substitute_definition(
    definition: str, substitutions: Mapping[str, str | int | float | bool] | None = None
) -> str:
    """Replace each ``${Name}`` in ``definition`` as ``DefinitionSubstitutions`` does.

    Every placeholder must have a value (a typo would otherwise reach Step Functions as a
    literal ``${…}``): the error lists all missing names. Booleans are written as JSON's
    ``true``/``false``, so an unquoted placeholder may stand for a number or a boolean.
    """
    values = dict(substitutions or {})
    missing = sorted({name for name in _PLACEHOLDER.findall(definition) if name not in values})
    if missing:
        raise ConfigurationError(
            f"no DefinitionSubstitutions value for ${{{name}}}" for name in missing
        )

    def text(value: str | float | bool) -> str:
        return json.dumps(value) if isinstance(value, bool) else str(value)

    return _PLACEHOLDER.sub(lambda match: text(values[match.group(1)]), definition)


async def create_state_machine(
    sfn: Any,
    *,
    name: str,
    definition: str,
    substitutions: Mapping[str, str | int | float | bool] | None = None,
    role_arn: str = LOCAL_STATE_MACHINE_ROLE,
) -> str:
    """Create a state machine from a definition string with substitutions; return its ARN.

    ``sfn`` is an aioboto3 Step Functions client. moto parses the definition here, so an ASL
    feature it does not know (``ItemBatcher``) fails now, as an :class:`AwsOperationError`.
    """
    body = substitute_definition(definition, substitutions)
    try:
        response = await sfn.create_state_machine(
            name=name, definition=body, roleArn=role_arn, type="STANDARD"
        )
    except ClientError as exc:
        raise _aws_error(exc, "CreateStateMachine") from exc
    return str(response["stateMachineArn"])


async def start_execution(
    sfn: Any, *, state_machine_arn: str, name: str, execution_input: Any
) -> StartedExecution:
    """Start an execution named ``name`` (unique per state machine for 90 days on AWS).

    A name already used is not an error here: nothing new starts, and the result says so —
    which is how a duplicate delivery of the same object starts no second execution.
    """
    try:
        response = await sfn.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(execution_input)
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
            return StartedExecution(
                execution_arn_for(state_machine_arn, name), already_existed=True
            )
        raise _aws_error(exc, "StartExecution") from exc
    return StartedExecution(str(response["executionArn"]), already_existed=False)


def execution_arn_for(state_machine_arn: str, name: str) -> str:
    """The ARN Step Functions gives the execution ``name`` of a (standard) state machine."""
    head, machine = state_machine_arn.rsplit(":stateMachine:", 1)
    return f"{head}:execution:{machine}:{name}"


async def wait_for_execution(
    sfn: Any,
    execution_arn: str,
    *,
    limit_seconds: float = 300.0,
    first_poll: float = 0.005,
    max_poll: float = 0.2,
) -> ExecutionOutcome:
    """Poll DescribeExecution until the execution ends; return how it ended.

    The interval starts at ``first_poll`` and grows by half each time up to ``max_poll``, so a
    short execution is seen ending within milliseconds and a long one costs five calls a
    second. Raises :class:`ExecutionWaitTimeoutError` after ``limit_seconds``.
    """
    deadline = time.monotonic() + limit_seconds
    interval = first_poll
    while True:
        try:
            described = await sfn.describe_execution(executionArn=execution_arn)
        except ClientError as exc:
            raise _aws_error(exc, "DescribeExecution") from exc
        status = str(described["status"])
        if status in TERMINAL_STATUSES:
            output = described.get("output")
            return ExecutionOutcome(
                execution_arn=execution_arn,
                status=status,
                output=None if output is None else json.loads(output),
                error=described.get("error"),
                cause=described.get("cause"),
                raw=described,
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ExecutionWaitTimeoutError(execution_arn, limit_seconds)
        await asyncio.sleep(min(interval, remaining))
        interval = min(interval * 1.5, max_poll)


def _aws_error(exc: ClientError, operation: str) -> AwsOperationError:
    error = exc.response.get("Error", {})
    return AwsOperationError(
        str(error.get("Message", exc)),
        service="stepfunctions",
        operation=operation,
        code=error.get("Code"),
    )
