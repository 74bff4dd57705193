"""Bounded, isolated rendering of operator-editable templates (SPEC §6).

The operator's template is data anyone with write access to the templates bucket controls, so
rendering it must not be able to stall the function, kill it, or change what the other parts
of the message show. Two layers do that:

1. :class:`OperatorEnvironment`, Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`
   (no reaching for Python internals, no ``months.append``/``clear``) plus caps on ``**``, ``*``
   and integer size, so the common bombs fail at once with a clear reason; and
   :func:`render_capped`, which stops generating output once it passes the size budget.
2. :func:`run_isolated`, which runs the whole job (compile, render, inline CSS) in a forked
   child process with an address-space limit, a CPU-time limit and no core dumps, reads the
   result through a pipe with a wall-clock deadline, and kills (``SIGKILL``) the child when
   the deadline or the size budget is passed. This is what bounds loops that make no calls
   (nothing in the sandbox sees them), single huge C-level allocations (``'x'.ljust(10**9)``)
   and native aborts (css-inline aborts on some allocation failures: only the child dies).
   The child's memory is a copy, so nothing it does reaches the parent's context either.

Every failure is an :class:`UnusableTemplateError` with a short ``reason`` (see
:data:`REASONS`); the caller falls back to the packaged template. ``os.fork`` + ``os.pipe`` work
in AWS Lambda (``multiprocessing`` queues and pools do not: they need ``/dev/shm``). Why fork and
not only the sandbox, and what it costs per email, is in ``docs/email.md``.
"""

from __future__ import annotations

import contextlib
import faulthandler
import math
import os
import resource
import select
import signal
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from jinja2 import Template
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from stori_pipeline.errors import PermanentError

__all__ = [
    "DEFAULT_BUDGET",
    "MAX_INT_BITS",
    "MAX_POWER_EXPONENT",
    "MAX_REPEAT_LENGTH",
    "REASONS",
    "OperatorEnvironment",
    "RenderBudget",
    "UnusableTemplateError",
    "failure_reason",
    "render_capped",
    "run_isolated",
]

# Fail-fast caps inside the sandbox (the child's limits are the real bound; these give a
# clear reason at once instead of a timeout). Templates do no arithmetic on money.
MAX_POWER_EXPONENT: Final = 64
MAX_REPEAT_LENGTH: Final = 100_000
MAX_INT_BITS: Final = 4096

REASONS: Final = frozenset(
    {
        "syntax_error",  # the template does not compile
        "undefined_variable",  # a name the context does not have (StrictUndefined)
        "security_error",  # Python internals, or mutating the context
        "render_error",  # any other exception while rendering (1 / 0, a capped ``**``, …)
        "output_too_large",  # the HTML passed RenderBudget.output_bytes
        "out_of_memory",  # an allocation passed RenderBudget.memory_bytes
        "timeout",  # rendering passed RenderBudget.seconds (the child is killed)
        "crashed",  # the child died without an answer (a native abort, a signal)
        "no_isolation",  # this platform or moment cannot fork a child: nothing is rendered
    }
)

_OK: Final = b"\x00"
_FAILED: Final = b"\x01"
_LENGTH_BYTES: Final = 8
_HEADER_BYTES: Final = 1 + _LENGTH_BYTES
_MAX_DETAIL: Final = 500
_READ_CHUNK: Final = 1 << 16
_CHILD_BROKE: Final = 70  # the child could not even report (EX_SOFTWARE)
# One fork at a time per process: between pipe() and the parent closing its write end, another
# thread's child would inherit that write end and hold the pipe open past our child's exit.
_FORK_LOCK: Final = threading.Lock()


@dataclass(frozen=True, slots=True)
class RenderBudget:
    """What one render of an operator template may use.

    Attributes:
        seconds: Wall-clock time for compile + render + CSS inlining, fork included.
        output_bytes: Size of the HTML (UTF-8) before and after CSS inlining.
        memory_bytes: Address space the child may add to what it inherits.
    """

    seconds: float = 2.0
    output_bytes: int = 4 * 1024 * 1024
    memory_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if not (self.seconds > 0 and self.output_bytes > 0 and self.memory_bytes > 0):
            raise ValueError("every render budget must be positive")


# 2 s: the packaged template with 2,412 months (1900-2100, the largest summary the ingest
# emits) renders in ~0.15 s here; 4 MiB: that email's HTML is 1.9 MB, and SES takes 10 MB;
# 256 MiB: the child's peak for that email is far below, and the function has 512 MB.
DEFAULT_BUDGET: Final = RenderBudget()


class UnusableTemplateError(PermanentError):
    """The operator's template cannot be used; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class OperatorEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox plus caps on ``**``, ``*`` and integer size it does not have.

    Immutable: the template cannot call mutating methods of lists, dicts and sets (``append``,
    ``clear``, ``update``…), so it cannot change data another part renders.
    """

    intercepted_binops = frozenset({"**", "*"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:  # noqa: ANN401 - Jinja's operands
        """Refuse results that would take unbounded time or memory."""
        if operator == "**":
            _check_power(left, right)
        elif operator == "*":
            _check_product(left, right)
        return super().call_binop(context, operator, left, right)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_power(base: object, exponent: object) -> None:
    if not _is_int(exponent):
        return
    assert isinstance(exponent, int)
    if abs(exponent) > MAX_POWER_EXPONENT:
        raise OverflowError(f"exponent {exponent} is too large in a template")
    if _is_int(base):
        assert isinstance(base, int)
        if base.bit_length() * exponent > MAX_INT_BITS:
            raise OverflowError("power result is too large in a template")


def _check_product(left: object, right: object) -> None:
    if _is_int(left) and _is_int(right):
        assert isinstance(left, int)
        assert isinstance(right, int)
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise OverflowError("product is too large in a template")
        return
    sized, times = (left, right) if isinstance(left, str | list | tuple) else (right, left)
    if (
        isinstance(sized, str | list | tuple)
        and isinstance(times, int)
        and len(sized) * times > MAX_REPEAT_LENGTH
    ):
        raise OverflowError("sequence repetition is too large in a template")


def render_capped(template: Template, context: Mapping[str, Any], *, max_bytes: int) -> str:
    """``template.render(context)``, stopped as soon as the output passes ``max_bytes``.

    Characters are counted while generating (cheap, and a character is at least one byte);
    the UTF-8 size is checked once at the end.

    Raises:
        UnusableTemplateError: ``output_too_large``.
    """
    parts: list[str] = []
    size = 0
    for piece in template.generate(context):
        size += len(piece)
        if size > max_bytes:
            raise _too_large(max_bytes)
        parts.append(piece)
    output = "".join(parts)
    if len(output.encode("utf-8", "surrogatepass")) > max_bytes:
        raise _too_large(max_bytes)
    return output


def _too_large(max_bytes: int) -> UnusableTemplateError:
    return UnusableTemplateError("output_too_large", f"the output passed {max_bytes:,} bytes")


def failure_reason(exc: BaseException) -> str:
    """The :data:`REASONS` code of an exception raised while compiling or rendering."""
    if isinstance(exc, UnusableTemplateError):
        return exc.reason
    if isinstance(exc, MemoryError):
        return "out_of_memory"
    if isinstance(exc, SecurityError):
        return "security_error"
    if isinstance(exc, TemplateSyntaxError):
        return "syntax_error"
    if isinstance(exc, UndefinedError):
        return "undefined_variable"
    return "render_error"


def _describe(exc: BaseException, budget: RenderBudget) -> str:
    if isinstance(exc, UnusableTemplateError):
        text = exc.detail
    elif isinstance(exc, MemoryError):
        text = f"MemoryError: an allocation passed the {budget.memory_bytes:,}-byte budget"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "\u2026"


# --- the child -------------------------------------------------------------------------------


def _address_space() -> int | None:
    """The process's current virtual size in bytes (Linux), else ``None``."""
    try:
        with open("/proc/self/statm", "rb") as statm:  # noqa: PTH123 - no pathlib in the child
            pages = int(statm.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def _lower_limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    if soft == resource.RLIM_INFINITY or value < soft:
        # Linux (Lambda) always allows lowering; where a platform refuses a limit (macOS and
        # RLIMIT_AS), the wall-clock kill and the output cap still bound the child.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value))


def _limit_child(budget: RenderBudget) -> None:
    # A native abort must not write a core file the size of the process, nor a Python
    # traceback into the function's log (the parent reports it as "crashed").
    _lower_limit(resource.RLIMIT_CORE, 0)
    faulthandler.disable()
    # Backstop for the parent's wall-clock kill: the kernel stops a spinning orphan.
    cpu = math.ceil(budget.seconds) + 1
    _lower_limit(resource.RLIMIT_CPU, cpu)
    # The child inherits the parent's mappings; it may add memory_bytes to them.
    size = _address_space()
    if size is not None:
        _lower_limit(resource.RLIMIT_AS, size + budget.memory_bytes)


def _encoded(work: Callable[[], str], budget: RenderBudget) -> bytes:
    data = work().encode("utf-8")
    if len(data) > budget.output_bytes:
        raise _too_large(budget.output_bytes)
    return data


def _message(work: Callable[[], str], budget: RenderBudget) -> bytes:
    try:
        _limit_child(budget)
        data = _encoded(work, budget)
    except BaseException as exc:  # noqa: BLE001 - everything becomes the parent's fallback
        payload = f"{failure_reason(exc)}\n{_describe(exc, budget)}".encode(
            "utf-8", "backslashreplace"
        )
        return _FAILED + len(payload).to_bytes(_LENGTH_BYTES, "big") + payload
    return _OK + len(data).to_bytes(_LENGTH_BYTES, "big") + data


def _child(work: Callable[[], str], write_fd: int, budget: RenderBudget) -> NoReturn:
    """Run in the forked child: render, write the answer, and leave without cleanup."""
    code = _CHILD_BROKE
    try:
        view = memoryview(_message(work, budget))
        while view:
            view = view[os.write(write_fd, view) :]
        code = 0
    finally:
        # os._exit: no atexit handlers, no flushing of the parent's buffers, no pytest.
        os._exit(code)


# --- the parent ------------------------------------------------------------------------------


def _fork(work: Callable[[], str], budget: RenderBudget) -> tuple[int, int]:
    """Start the child; returns (pid, read end of its pipe)."""
    if not hasattr(os, "fork"):
        raise UnusableTemplateError("no_isolation", "this platform cannot fork")
    with _FORK_LOCK:
        read_fd, write_fd = os.pipe()
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns when a multi-threaded process forks: a lock another thread
                # holds stays held in the child. The child takes none (no logging, no I/O but
                # its pipe, no imports that are not done) and leaves through os._exit.
                warnings.filterwarnings(
                    "ignore", message=r".*multi-threaded.*fork", category=DeprecationWarning
                )
                pid = os.fork()
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            raise UnusableTemplateError("no_isolation", f"fork failed: {exc}") from exc
        if pid == 0:  # pragma: no cover - the child; its work is observed through the pipe
            os.close(read_fd)
            _child(work, write_fd, budget)
        os.close(write_fd)
    return pid, read_fd


def _read_answer(read_fd: int, budget: RenderBudget) -> bytes:
    """Everything the child writes until it closes the pipe, within the time and size budget."""
    deadline = time.monotonic() + budget.seconds
    limit = _HEADER_BYTES + max(budget.output_bytes, 4 * _MAX_DETAIL)
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    answer = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UnusableTemplateError("timeout", f"rendering took over {budget.seconds:g} s")
        if not poller.poll(math.ceil(remaining * 1000)):
            continue
        chunk = os.read(read_fd, _READ_CHUNK)
        if not chunk:
            return bytes(answer)
        answer += chunk
        if len(answer) > limit:
            raise _too_large(budget.output_bytes)


def _reap(pid: int, *, kill: bool) -> int:
    """Wait for the child (killing it first when asked); returns its wait status."""
    if kill:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return status


def _died(status: int, budget: RenderBudget) -> UnusableTemplateError:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number == signal.SIGXCPU:
            return UnusableTemplateError(
                "timeout", f"rendering used over {math.ceil(budget.seconds) + 1} s of CPU"
            )
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return UnusableTemplateError("crashed", f"the renderer was killed by {name}")
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return UnusableTemplateError("crashed", f"the renderer exited with status {code}")


def _decode(answer: bytes, status: int, budget: RenderBudget) -> str:
    length = int.from_bytes(answer[1:_HEADER_BYTES], "big")
    payload = answer[_HEADER_BYTES:]
    if len(answer) < _HEADER_BYTES or len(payload) != length or status != 0:
        raise _died(status, budget)
    if answer[:1] == _OK:
        return payload.decode("utf-8")
    reason, _, detail = payload.decode("utf-8", "replace").partition("\n")
    raise UnusableTemplateError(reason if reason in REASONS else "render_error", detail)


def run_isolated(work: Callable[[], str], *, budget: RenderBudget = DEFAULT_BUDGET) -> str:
    """Run ``work`` in a forked child under ``budget`` and return the text it returns.

    ``work`` runs in a copy of this process: it sees the caller's objects as they are at the
    call and cannot change them. It must not log or do I/O (another thread may hold the lock).
    Safe to call from any thread (no signals are used in the parent); it blocks the caller
    for at most ``budget.seconds`` plus the time to reap a killed child.

    Raises:
        UnusableTemplateError: ``work`` raised (its :func:`failure_reason`), its text passed
            ``budget.output_bytes``, it ran past ``budget.seconds``, it died, or no child
            could be started.
    """
    pid, read_fd = _fork(work, budget)
    answer: bytes | None = None
    status = 0
    try:
        answer = _read_answer(read_fd, budget)
    finally:
        os.close(read_fd)
        status = _reap(pid, kill=answer is None)
    return _decode(answer, status, budget)
