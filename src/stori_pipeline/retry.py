"""Capped exponential backoff with full jitter, and a test mode that turns the waits off.

The adapters write their own retry loops, because each retry re-sends only what is left
(DynamoDB ``UnprocessedItems``, EventBridge's failed entries); this module owns only *how long*
to wait between attempts and how many attempts there are. The schedule is AWS's "full
jitter": attempt *n* waits a uniformly random time in ``[0, min(max_delay, base * 2**(n-1))]``,
which spreads retrying clients out instead of making them collide again in lock step.

Tests call :func:`set_testing` (like ``stamina.set_testing``) so backoffs never sleep.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

__all__ = ["RetryPolicy", "is_testing", "set_testing"]


class _Mode:
    """Process-wide switch; a class attribute so there is no ``global`` statement."""

    testing = False


def set_testing(testing: bool) -> None:
    """Turn the test mode on or off: while on, :meth:`RetryPolicy.sleep` does not wait."""
    _Mode.testing = testing


def is_testing() -> bool:
    """Whether backoff sleeps are currently turned off."""
    return _Mode.testing


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to try an operation and how long to wait between tries.

    Attributes:
        max_attempts: total attempts, the first one included (1 means "never retry").
        base_delay: the cap of the first backoff, in seconds.
        max_delay: the cap no backoff exceeds, in seconds.
    """

    max_attempts: int = 8
    base_delay: float = 0.05
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 0 <= self.base_delay <= self.max_delay:
            raise ValueError("delays must satisfy 0 <= base_delay <= max_delay")

    def cap(self, attempt: int) -> float:
        """The upper bound of the backoff after failed attempt number ``attempt`` (1-based)."""
        # min() before the power would still overflow for huge attempts; clamp the exponent.
        growth = float(2 ** max(0, min(attempt - 1, 62)))
        return min(self.max_delay, self.base_delay * growth)

    def backoff(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """A full-jitter delay after failed attempt number ``attempt`` (1-based)."""
        draw: float = (rng or _RNG).random()
        return draw * self.cap(attempt)

    async def sleep(self, attempt: int) -> None:
        """Wait the backoff after failed attempt ``attempt``; only yield in test mode."""
        if _Mode.testing:
            await asyncio.sleep(0)  # still a scheduling point, as a real wait would be
            return
        await asyncio.sleep(self.backoff(attempt))


# Jitter needs no cryptographic strength; one module RNG avoids reseeding per call.
_RNG = random.Random()  # noqa: S311 - jitter, not cryptography
