"""The per-session send budget: one token bucket shared by messages and typing (protocol reference §8).

Genesys allows about 2 ``onMessage`` per second per session (typing events are ``onMessage`` too), so the
bucket refills at ``rate_per_s`` up to ``burst`` tokens. It reads the injected :class:`bridge.ports.Clock`
and sleeps on the event loop, so virtual time (looptime) drives it in tests.

Callers: one actor owns one budget and calls it from one task; it is not shared between tasks.
"""

from __future__ import annotations

import asyncio

from bridge.ports import Clock

__all__ = ["SendBudget"]


class SendBudget:
    """A token bucket: :meth:`acquire` waits for a token, :meth:`try_acquire` never waits."""

    def __init__(self, *, rate_per_s: float, burst: int, clock: Clock) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._stamp: float | None = None

    def _refill(self) -> None:
        now = self._clock.monotonic()
        if self._stamp is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def delay(self) -> float:
        """Seconds until a token is available (0.0 when one is)."""
        self._refill()
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self._rate

    def try_acquire(self) -> bool:
        """Take a token if one is available now; never waits (typing is dropped, not queued)."""
        if self.delay() > 0.0:
            return False
        self._tokens -= 1.0
        return True

    async def acquire(self) -> float:
        """Wait for a token and take it. Returns the seconds waited (0.0 when none)."""
        waited = 0.0
        while (wait := self.delay()) > 0.0:
            await asyncio.sleep(wait)
            waited += wait
        self._tokens -= 1.0
        return waited
