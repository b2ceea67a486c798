"""Rate limits as token buckets on an injected clock (the event loop's by default, so virtual time works).

A bucket of ``capacity`` tokens refills at ``capacity / period_s`` tokens per second: "2 per second" is
``TokenBucket(2, 1.0)``, "60 per minute" is ``TokenBucket(60, 60.0)``. Each check is O(1).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Clock", "TokenBucket", "per_minute", "per_second"]

Clock = Callable[[], float]


class TokenBucket:
    """A token bucket; :meth:`try_take` says whether one more event fits now."""

    __slots__ = ("_capacity", "_clock", "_last", "_rate", "_tokens")

    def __init__(self, capacity: float, period_s: float, clock: Clock) -> None:
        self._capacity = max(capacity, 1.0)
        self._rate = capacity / period_s
        self._clock = clock
        self._tokens = self._capacity
        self._last = clock()

    def try_take(self) -> bool:
        """Take one token if there is one. Returns False (and takes nothing) when the limit is hit."""
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def per_second(rate: float | None, clock: Clock) -> TokenBucket | None:
    """A bucket for ``rate`` events per second, or None when the limit is off."""
    return None if rate is None else TokenBucket(rate, 1.0, clock)


def per_minute(count: int | None, clock: Clock) -> TokenBucket | None:
    """A bucket for ``count`` events per minute, or None when the limit is off."""
    return None if count is None else TokenBucket(float(count), 60.0, clock)
