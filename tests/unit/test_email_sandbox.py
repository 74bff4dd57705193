"""The bounded runner and the operator sandbox, on their own (stori_pipeline.email.sandbox)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from jinja2 import StrictUndefined
from jinja2.exceptions import SecurityError

from stori_pipeline.email.sandbox import (
    DEFAULT_BUDGET,
    OperatorEnvironment,
    RenderBudget,
    UnusableTemplateError,
    render_capped,
    run_isolated,
)

FAST = RenderBudget(seconds=0.5, output_bytes=64 * 1024, memory_bytes=64 * 1024 * 1024)
# For tests of something else than time: forking the whole test run's process (1.4 GB by the
# time the unit tests run after the integration ones) took 0.7-0.9 s per render with 4 threads.
ROOMY = RenderBudget(seconds=10, output_bytes=64 * 1024, memory_bytes=64 * 1024 * 1024)
# Forking and reaping, on a loaded 2-core machine: generous, and still far below "minutes".
SLACK_SECONDS = 3.0


def reason_of(work: object, budget: RenderBudget = FAST) -> UnusableTemplateError:
    """The error run_isolated raises for ``work``."""
    with pytest.raises(UnusableTemplateError) as info:
        run_isolated(work, budget=budget)  # type: ignore[arg-type]
    return info.value


def test_returns_the_text_the_child_built() -> None:
    """The child's text comes back whole, non-ASCII included, larger than a pipe buffer."""
    text = "añø€𝄞" * 30_000  # ~400 KB of UTF-8, several pipe buffers
    assert run_isolated(lambda: text) == text


def test_child_exception_becomes_a_reason_with_its_message() -> None:
    """An exception in the child is a render_error carrying its type and message."""

    def work() -> str:
        raise ValueError("nope")

    error = reason_of(work)
    assert (error.reason, error.detail) == ("render_error", "ValueError: nope")


def test_loop_that_makes_no_call_is_killed_at_the_deadline(tmp_path: Path) -> None:
    """A pure busy loop is stopped after budget.seconds; the child is killed and reaped."""
    pid_file = tmp_path / "pid"

    def work() -> str:
        pid_file.write_text(str(os.getpid()))
        while True:
            pass

    started = time.monotonic()
    error = reason_of(work)
    elapsed = time.monotonic() - started
    assert error.reason == "timeout"
    assert FAST.seconds <= elapsed < FAST.seconds + SLACK_SECONDS
    pid = int(pid_file.read_text())
    assert pid != os.getpid()
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped: not even a zombie


def test_huge_allocation_is_out_of_memory_not_a_dead_process() -> None:
    """A single allocation past memory_bytes fails in the child; this process is untouched."""
    error = reason_of(lambda: str(bytearray(2 * FAST.memory_bytes)))
    assert error.reason == "out_of_memory"
    assert "memory" in error.detail.lower()


def test_native_abort_kills_only_the_child() -> None:
    """os.abort() (what css-inline does on some allocation failures) is a crash, not ours."""
    error = reason_of(os.abort)
    assert error.reason == "crashed"
    assert "SIGABRT" in error.detail


def test_child_that_exits_without_answering_is_a_crash() -> None:
    """A child that leaves before writing its answer is reported as crashed."""
    error = reason_of(lambda: os._exit(3))
    assert (error.reason, error.detail) == ("crashed", "the renderer exited with status 3")


def test_oversized_text_never_comes_back() -> None:
    """Text over output_bytes (in UTF-8 bytes) is refused, even when it has fewer characters."""
    chars = FAST.output_bytes // 2 + 1  # 2 bytes each: over the byte budget, under in chars
    error = reason_of(lambda: "é" * chars)
    assert error.reason == "output_too_large"
    assert run_isolated(lambda: "é" * (FAST.output_bytes // 2), budget=FAST)


def test_the_child_cannot_change_the_callers_data() -> None:
    """What the child mutates is its own copy of the caller's objects."""
    months = [1, 2, 3]

    def work() -> str:
        months.clear()
        return str(len(months))

    assert run_isolated(work, budget=FAST) == "0"
    assert months == [1, 2, 3]


def test_works_from_threads_at_the_same_time() -> None:
    """No signals in the parent: several threads may render at once, each gets its own text."""
    results: dict[int, str] = {}

    def render(n: int) -> None:
        results[n] = run_isolated(lambda: f"thread {n}", budget=ROOMY)

    threads = [threading.Thread(target=render, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {n: f"thread {n}" for n in range(4)}


def test_production_budget_is_the_documented_one() -> None:
    """2 s, 4 MiB of HTML, 256 MiB of extra memory (docs/email.md explains each)."""
    assert RenderBudget(2.0, 4 * 1024 * 1024, 256 * 1024 * 1024) == DEFAULT_BUDGET
    with pytest.raises(ValueError, match="positive"):
        RenderBudget(seconds=0)


ENV = OperatorEnvironment(autoescape=True, undefined=StrictUndefined)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ((9**64)**64)**64 }}",
        "{{ 10 ** 65 }}",
        "{% set n = 2 ** 64 %}{{ n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n }}",  # noqa: E501
        "{{ 'ab' * 50001 }}",
        "{{ [1] * 100001 }}",
    ],
)
def test_arithmetic_bombs_fail_at_once(source: str) -> None:
    """Huge powers, products and repetitions raise OverflowError instead of computing."""
    with pytest.raises(OverflowError):
        ENV.from_string(source).render()


def test_ordinary_arithmetic_still_works() -> None:
    """The caps leave everyday template arithmetic alone."""
    assert ENV.from_string("{{ 2 ** 10 }} {{ 'ab' * 3 }} {{ 12 * 12 }}").render() == (
        "1024 ababab 144"
    )


@pytest.mark.parametrize(
    "source",
    ["{% set _ = months.append(1) %}", "{% set _ = months.clear() %}", "{{ d.update(a=1) }}"],
)
def test_context_cannot_be_mutated(source: str) -> None:
    """The immutable sandbox refuses mutating methods of the data it is given."""
    months, d = [1, 2], {"a": 0}
    with pytest.raises(SecurityError):
        ENV.from_string(source).render(months=months, d=d)
    assert (months, d) == ([1, 2], {"a": 0})


def test_render_capped_stops_generating_at_the_budget() -> None:
    """A loop that only prints stops as soon as the output passes max_bytes."""
    bomb = ENV.from_string(
        "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}"
    )
    started = time.monotonic()
    with pytest.raises(UnusableTemplateError) as info:
        render_capped(bomb, {}, max_bytes=10_000)
    assert info.value.reason == "output_too_large"
    assert time.monotonic() - started < 5.0  # 10^10 iterations would take hours
    assert render_capped(ENV.from_string("{{ 'x' * 10 }}"), {}, max_bytes=10) == "x" * 10
