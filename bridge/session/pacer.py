"""Paces the first connect of sessions resumed after a restart (issue 4: recovery must not stampede
Genesys; §8: 1000 new connections/min per deployment, configureSession limits).

Every resumed actor is registered at once (so commands for it queue in its inbox right away) and takes
a *slot* here before its first connect; slots are ``1 / rate_per_s`` apart, first come first served.
Pure bookkeeping on the injected clock: the caller sleeps (interruptibly) for the returned delay.
"""

from __future__ import annotations

from bridge.ports import Clock

__all__ = ["ConnectPacer"]


class ConnectPacer:
    """Hands out connect slots ``1 / rate_per_s`` seconds apart."""

    def __init__(self, *, rate_per_s: float, clock: Clock) -> None:
        self._interval = 1.0 / rate_per_s
        self._clock = clock
        self._next: float | None = None

    def reserve(self) -> float:
        """Take the next slot; return how long to wait for it (0.0 when it is now)."""
        now = self._clock.monotonic()
        slot = now if self._next is None else max(now, self._next)
        self._next = slot + self._interval
        return slot - now
