"""Capped exponential backoff with full jitter, and the sleep-free test mode."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

import pytest

from stori_pipeline.retry import RetryPolicy, is_testing, set_testing


@pytest.fixture
def testing_mode() -> Iterator[None]:
    """Turn the test mode on for one test."""
    set_testing(True)
    yield
    set_testing(False)


def test_cap_doubles_from_the_base_until_the_maximum() -> None:
    """Attempt n's cap is base * 2**(n-1), never above max_delay."""
    policy = RetryPolicy(max_attempts=10, base_delay=0.1, max_delay=1.0)
    assert [policy.cap(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_huge_attempt_numbers_do_not_overflow() -> None:
    """The cap stays max_delay however many attempts were made."""
    assert RetryPolicy(max_delay=3.0).cap(10_000) == 3.0


def test_backoff_is_full_jitter_within_the_cap() -> None:
    """Each delay is uniform in [0, cap]: all inside, and spread over the range."""
    policy = RetryPolicy(base_delay=0.5, max_delay=10.0)
    rng = random.Random(1)
    delays = [policy.backoff(3, rng=rng) for _ in range(2_000)]
    assert all(0 <= d <= 2.0 for d in delays)
    assert min(delays) < 0.1
    assert max(delays) > 1.9


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"base_delay": -1.0}, {"base_delay": 2.0, "max_delay": 1.0}],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    """A policy that could never run or would wait backwards raises ValueError."""
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_a_frozen_value() -> None:
    """A policy cannot be changed after it is made."""
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 3  # type: ignore[misc]


async def test_test_mode_turns_sleeps_off(testing_mode: None) -> None:
    """In test mode a 60-second backoff returns at once."""
    assert is_testing()
    policy = RetryPolicy(base_delay=60.0, max_delay=60.0)
    started = time.monotonic()
    await asyncio.wait_for(policy.sleep(5), timeout=5)
    assert time.monotonic() - started < 5


async def test_outside_test_mode_the_backoff_really_waits() -> None:
    """Without test mode a backoff with a positive cap is a real (cancellable) wait."""
    assert not is_testing()
    policy = RetryPolicy(base_delay=60.0, max_delay=60.0)
    timeouts = 0
    # Full jitter can draw ~0, so try several times: 20 draws under 1e-3 of the cap never happen.
    for _ in range(20):
        try:
            await asyncio.wait_for(policy.sleep(1), timeout=0.06)
        except TimeoutError:
            timeouts += 1
    assert timeouts > 0
