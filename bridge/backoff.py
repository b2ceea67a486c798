"""Reconnect delays: exponential backoff with jitter, as a pure generator. No I/O, no clock.

Attempt ``n`` (counting from 1) waits ``min(max_s, initial_s * 2**(n-1) + uniform(0, jitter_s))``; the
jitter defaults to ``initial_s``. This is the schedule stamina (and tenacity under it) computes for the
broker reconnects, so a session and the broker back off alike. The caller sleeps the delays on the event
loop, so virtual time (looptime) runs them at once in tests.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator

__all__ = ["Backoff", "backoff_delay", "exponential_jitter", "jittered_backoff"]

#: A fresh iterator of reconnect delays (seconds) per outage. Injected so tests can pin it.
Backoff = Callable[[], Iterator[float]]


def exponential_jitter(
    initial_s: float,
    max_s: float,
    *,
    jitter_s: float | None = None,
    uniform: Callable[[float, float], float] = random.uniform,
) -> Iterator[float]:
    """Yield the delays of attempts 1, 2, 3 … for ever: doubling from ``initial_s``, plus jitter, capped.

    The caller stops iterating when it gives up. ``uniform(a, b)`` draws the jitter; pass a seeded
    ``random.Random().uniform`` (or a constant) for a reproducible schedule.

    Raises:
        ValueError: ``initial_s`` or ``max_s`` is not positive, ``initial_s`` exceeds ``max_s``, or
            ``jitter_s`` is negative.
    """
    jitter = initial_s if jitter_s is None else jitter_s
    if initial_s <= 0 or max_s <= 0:
        raise ValueError("initial_s and max_s must be > 0")
    if initial_s > max_s:
        raise ValueError("initial_s must not exceed max_s")
    if jitter < 0:
        raise ValueError("jitter_s must be >= 0")
    return _delays(initial_s, max_s, jitter, uniform)


def backoff_delay(
    attempt: int,
    initial_s: float,
    max_s: float,
    *,
    jitter_s: float | None = None,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """The wait before attempt ``attempt`` (1 = after the first failure): the one backoff formula."""
    jitter = initial_s if jitter_s is None else jitter_s
    # The exponent is bounded: the cap is reached long before, and a float power overflows past 1023.
    return min(max_s, initial_s * 2.0 ** min(attempt - 1, 64) + uniform(0.0, jitter))


def _delays(initial_s: float, max_s: float, jitter: float, uniform: Callable[[float, float], float]) -> Iterator[float]:
    # Validation lives in the caller so that it raises at the call, not at the first next().
    for attempt in itertools.count(1):
        yield backoff_delay(attempt, initial_s, max_s, jitter_s=jitter, uniform=uniform)


def jittered_backoff(initial_s: float, max_s: float) -> Backoff:
    """A :data:`Backoff`: each call starts a fresh :func:`exponential_jitter` schedule.

    Raises ``ValueError`` here, at construction, for arguments :func:`exponential_jitter` refuses.
    """
    exponential_jitter(initial_s, max_s)  # validate now, not at the first outage

    def delays() -> Iterator[float]:
        return exponential_jitter(initial_s, max_s)

    return delays
