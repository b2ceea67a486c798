"""Rate limits on an injected clock (the event loop's by default, so virtual time works).

A :class:`TokenBucket` of ``capacity`` tokens refills at ``capacity / period_s`` tokens per second: "2 per
second" is ``TokenBucket(2, 1.0)``, "60 per minute" is ``TokenBucket(60, 60.0)``. A :class:`SlidingWindow`
allows at most ``capacity`` events in any ``period_s``: the stricter reading of "2 per second", which
refuses a third event half a second after a burst of two where a bucket would have refilled one. How
Genesys counts is not documented (docs/genesys-protocol.md §8, §14.1), so the simulator can play either.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

__all__ = ["Clock", "Limiter", "SlidingWindow", "TokenBucket", "per_minute", "per_second"]

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


class SlidingWindow:
    """At most ``capacity`` events in any ``period_s``; :meth:`try_take` says whether one more fits now."""

    __slots__ = ("_capacity", "_clock", "_period_s", "_times")

    def __init__(self, capacity: float, period_s: float, clock: Clock) -> None:
        self._capacity = max(int(capacity), 1)
        self._period_s = period_s
        self._clock = clock
        self._times: deque[float] = deque()

    def try_take(self) -> bool:
        """Record one event if it fits in the window ending now. Returns False (records nothing) otherwise."""
        now = self._clock()
        while self._times and self._times[0] <= now - self._period_s:
            self._times.popleft()
        if len(self._times) >= self._capacity:
            return False
        self._times.append(now)
        return True


#: What a rate check needs: ``try_take()``.
Limiter = TokenBucket | SlidingWindow


def per_second(rate: float | None, clock: Clock, *, window: bool = False) -> Limiter | None:
    """A limit of ``rate`` events per second (a sliding window of ``rate`` events in 1 s when ``window``), or
    None when the limit is off."""
    if rate is None:
        return None
    return SlidingWindow(rate, 1.0, clock) if window else TokenBucket(rate, 1.0, clock)


def per_minute(count: int | None, clock: Clock) -> TokenBucket | None:
    """A bucket for ``count`` events per minute, or None when the limit is off."""
    return None if count is None else TokenBucket(float(count), 60.0, clock)
