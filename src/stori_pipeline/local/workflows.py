"""The ingest workflow in the local stack: its tasks run by the dispatcher, its end awaited.

Two pieces connect the template's state machine (executed by moto, :mod:`.stepfunctions`) to
the rest of the local stack:

* :func:`workflow_bridge` routes every Lambda task of every execution to
  :meth:`Dispatcher.invoke` — the function's warm worker processes, with its environment and
  ``Timeout`` — and tells the person watching when each kind of step starts;
* :class:`WorkflowAwareRuntime` wraps the ingest function's runtime: an upload the function
  routed to the workflow (``"path": "distributed"``) is settled only when its execution ends,
  with the workflow's result (the same shape as the single path's, plus ``ranges``), so the
  demo reports it like any other upload — and a failed execution as a failed invocation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from stori_pipeline.local.dispatcher import Dispatcher, InvocationError, LambdaContext, Runtime
from stori_pipeline.local.stack import LocalStack, clients
from stori_pipeline.local.stepfunctions import invoker_on_loop, lambda_bridge, wait_for_execution

__all__ = ["WORKFLOW_WAIT_SECONDS", "WorkflowAwareRuntime", "workflow_bridge"]

# How long an upload may wait for its workflow locally (moto writes ~3k items/s).
WORKFLOW_WAIT_SECONDS = 6 * 60 * 60
# Retry waits of the definition (2 s, x2) compressed locally, like the dispatcher's retries.
LOCAL_RETRY_DELAY_SCALE = 0.1


class WorkflowAwareRuntime:
    """The ingest function's runtime, whose routed uploads end when their workflow ends."""

    def __init__(self, inner: Runtime, endpoint: str) -> None:
        self.inner = inner
        self.endpoint = endpoint

    async def invoke(self, event: dict[str, Any], context: LambdaContext) -> Any:
        """Invoke the function; for a routed upload, wait for the execution and return its result.

        Raises:
            InvocationError: the function failed, or the workflow's execution did not succeed.
        """
        result = await self.inner.invoke(event, context)
        if not (
            isinstance(result, dict)
            and result.get("path") == "distributed"
            and result.get("executionArn")
        ):
            return result
        async with clients(self.endpoint, "stepfunctions") as (sfn,):
            outcome = await wait_for_execution(
                sfn, str(result["executionArn"]), limit_seconds=WORKFLOW_WAIT_SECONDS
            )
        if not outcome.succeeded:
            raise InvocationError(
                f"the ingest workflow {outcome.status.lower()}: {outcome.error}: {outcome.cause}"
            )
        output = outcome.output if isinstance(outcome.output, dict) else {}
        return {**output, "status": "processed", "executionArn": result["executionArn"]}

    def close(self) -> None:
        """Release the wrapped runtime's workers."""
        self.inner.close()


@contextmanager
def workflow_bridge(
    stack: LocalStack, dispatcher: Dispatcher, tell: Callable[[str], None]
) -> Iterator[None]:
    """While active, the stack's state machines run their Lambda tasks on ``dispatcher``.

    Must be entered from the running event loop the dispatcher uses. ``tell`` hears one line
    when an import reaches each step (plan, scan, …), so a long workflow is never silent.
    """
    if not stack.state_machines:
        yield
        return
    loop = asyncio.get_running_loop()
    logical_ids = {function.name: function.logical_id for function in stack.plan.functions}
    seen: set[tuple[str, str]] = set()

    async def invoke(function_name: str, payload: Any) -> Any:
        logical_id = logical_ids.get(function_name)
        if logical_id is None:
            raise InvocationError(f"no function named {function_name} in the local stack")
        if isinstance(payload, dict):
            raw_job = payload.get("job")
            job: dict[str, Any] = raw_job if isinstance(raw_job, dict) else {}
            step = str(payload.get("step"))
            mark = (str(job.get("importId")), step)
            if mark not in seen:
                seen.add(mark)
                tell(f"ingest workflow of {job.get('key')}: {step}")
        return await dispatcher.invoke(logical_id, payload)

    with lambda_bridge(invoker_on_loop(loop, invoke), retry_delay_scale=LOCAL_RETRY_DELAY_SCALE):
        yield
