"""Paces the first connect of sessions resumed after a restart (recovery must not stampede
Genesys; §8: 1000 new connections/min per deployment, configureSession limits).

Every resumed actor is registered at once (so commands for it queue in its inbox right away) and takes
a *slot* here before its first connect; slots are ``1 / rate_per_s`` apart, first come first served.
Pure bookkeeping on the injected clock: the caller sleeps (interruptibly) for the returned delay.
"""

from __future__ import annotations

from collections import deque

from bridge.ports import Clock

__all__ = ["ConnectPacer", "ConnectWindow"]


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


class ConnectWindow:
    """At most ``limit`` new connections per deployment in any ``window_s`` seconds (§8: Genesys allows
    1000 new WebSocket connections per deployment per minute, configurable on their side).

    Every connect of every session (start, reconnect, resume) takes a slot here first, so the limit is
    respected, never discovered as HTTP 429s. Exact sliding window: a slot at ``t`` is granted only if
    fewer than ``limit`` slots lie in ``(t - window_s, t]``. Pure bookkeeping on the injected clock, like
    :class:`ConnectPacer`; memory is at most ``limit`` timestamps per deployment.
    """

    def __init__(self, *, limit: int, clock: Clock, window_s: float = 60.0) -> None:
        self._limit = limit
        self._window = window_s
        self._clock = clock
        self._slots: dict[str, deque[float]] = {}

    def reserve(self, deployment_id: str) -> float:
        """Take the next slot for ``deployment_id``; return how long to wait for it (0.0 when it is now)."""
        now = self._clock.monotonic()
        slots = self._slots.setdefault(deployment_id, deque())
        while slots and slots[0] <= now - self._window:
            slots.popleft()
        slot = now if len(slots) < self._limit else max(now, slots[-self._limit] + self._window)
        slots.append(slot)
        while len(slots) > self._limit:  # only the newest `limit` slots can constrain the next one
            slots.popleft()
        return slot - now
