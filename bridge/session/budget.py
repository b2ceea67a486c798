"""The per-session send budget: one sliding window shared by messages and typing (protocol reference §8).

Genesys allows about 2 ``onMessage`` per second per session (typing events are ``onMessage`` too) and
counts them in a sliding window: a token bucket that refills continuously is not strict enough, because
a full bucket of 2 plus a refill at 2/s puts 3 frames into the first second (sends at 0, 0, 0.5), and
six sends in a burst drew two 429s. So the budget is a window: at most ``burst`` sends in any
``burst / rate_per_s`` seconds. With the defaults (2/s, burst 2) that is at most 2 frames in any 1 s
window, and a burst of 6 goes out at 0, 0, 1, 1, 2, 2; the long-run rate is still ``rate_per_s``.

It reads the injected :class:`bridge.ports.Clock` and sleeps on the event loop, so virtual time
(looptime) drives it in tests.

Callers: one actor owns one budget and calls it from one task; it is not shared between tasks. A taken
slot counts from the moment it is taken, so send right after taking it.
"""

from __future__ import annotations

import asyncio
from collections import deque

from bridge.ports import Clock

__all__ = ["SendBudget"]


class SendBudget:
    """At most ``burst`` sends in any ``burst / rate_per_s`` seconds.

    :meth:`acquire` waits for a slot, :meth:`try_acquire` never waits, :meth:`delay` says how long a slot
    is away. A send at ``t`` is allowed only when the ``burst``-th send before it was at ``t - window``
    or earlier, so every half-open window ``[a, a + window)`` holds at most ``burst`` sends. Memory is
    ``burst`` timestamps.
    """

    def __init__(self, *, rate_per_s: float, burst: int, clock: Clock, margin_s: float = 0.0) -> None:
        """``margin_s`` lengthens the window: Genesys counts frames when they *arrive*, so two frames sent
        exactly one window apart can arrive less than one window apart when the first was delayed more
        on the way. A margin of a few times the network jitter keeps such pairs apart too."""
        if rate_per_s <= 0 or burst < 1 or margin_s < 0:
            raise ValueError("rate_per_s must be > 0, burst >= 1 and margin_s >= 0")
        self._limit = burst
        self._window_s = burst / rate_per_s + margin_s
        self._clock = clock
        self._sent: deque[float] = deque(maxlen=burst)  # the last `burst` send times, oldest first

    def __repr__(self) -> str:
        return f"SendBudget(limit={self._limit}, window_s={self._window_s:g}, recent={len(self._sent)})"

    def delay(self) -> float:
        """Seconds until a send is allowed (0.0 when one is now)."""
        if len(self._sent) < self._limit:
            return 0.0
        return max(0.0, self._sent[0] + self._window_s - self._clock.monotonic())

    def try_acquire(self) -> bool:
        """Take a slot if one is free now; never waits (typing is dropped, not queued)."""
        if self.delay() > 0.0:
            return False
        self._sent.append(self._clock.monotonic())  # maxlen drops the oldest, which no longer constrains
        return True

    async def acquire(self) -> float:
        """Wait for a slot and take it. Returns the seconds waited (0.0 when none)."""
        waited = 0.0
        # A loop, not one sleep: the event loop may wake a timer up to its clock resolution early.
        while (wait := self.delay()) > 0.0:
            await asyncio.sleep(wait)
            waited += wait
        self._sent.append(self._clock.monotonic())
        return waited
