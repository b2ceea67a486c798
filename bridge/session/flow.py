"""Flow control: what may go to Genesys, and when, and what may wait in a session (§8).

**Towards Genesys**: the per-session send budget and the pacing of connects.

- :class:`SendBudget`: at most ``burst`` sends in any ``burst / rate_per_s`` seconds, shared by messages and
  typing of one session.
- :class:`ConnectPacer`: the first connect of sessions resumed after a restart, ``1 / rate_per_s`` apart, so
  recovery does not stampede Genesys.
- :class:`ConnectWindow`: every new connection of a deployment takes a slot in Genesys' per-minute window.

All read the injected clock, so virtual time (looptime) drives them in tests.

**Into a session**: :class:`Inbox`, its bounded command inbox. Policy when full: **reject** (the registry
answers ``overflow``).

Unlike ``asyncio.Queue`` it can be *closed*: the consumer's :meth:`next` then returns ``None`` once the
current command is done, and :meth:`drain` hands back what was never started (to requeue on shutdown or
to answer ``session_ended`` when the session is over). One consumer task; producers never wait.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Iterable
from typing import Final

from bridge.ports import Clock, Envelope
from bridge.record import RECENT_CONNECTS_KEPT
from bridge.session.signal import Signal

__all__ = ["ConnectPacer", "ConnectWindow", "Inbox", "Offer", "SendBudget"]


class SendBudget:
    """At most ``burst`` sends in any ``burst / rate_per_s`` seconds.

    :meth:`acquire` waits for a slot, :meth:`try_acquire` never waits, :meth:`delay` says how long a slot
    is away. A send at ``t`` is allowed only when the ``burst``-th send before it was at ``t - window``
    or earlier, so every half-open window ``[a, a + window)`` holds at most ``burst`` sends. Memory is
    ``burst`` timestamps.
    """

    __slots__ = ("_clock", "_limit", "_sent", "_window_s")

    def __init__(self, *, rate_per_s: float, burst: int, clock: Clock, margin_s: float = 0.0) -> None:
        """``margin_s`` lengthens the window: Genesys counts frames when they *arrive*, so two frames sent
        exactly one window apart can arrive less than one window apart when the first was delayed more
        on the way. A margin of a few times the network jitter keeps such pairs apart too."""
        if rate_per_s <= 0 or burst < 1 or margin_s < 0:
            raise ValueError("rate_per_s must be > 0, burst >= 1 and margin_s >= 0")
        self._limit = burst
        self._window_s = burst / rate_per_s + margin_s
        self._clock = clock
        self._sent: list[float] = []  # the last `burst` send times, oldest first (a list: a deque costs 600 B)

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
        self._took()
        return True

    async def acquire(self) -> float:
        """Wait for a slot and take it. Returns the seconds waited (0.0 when none)."""
        waited = 0.0
        # A loop, not one sleep: the event loop may wake a timer up to its clock resolution early.
        while (wait := self.delay()) > 0.0:
            await asyncio.sleep(wait)
            waited += wait
        self._took()
        return waited

    def _took(self) -> None:
        """A send goes now; the oldest time beyond ``burst`` no longer constrains anything."""
        self._sent.append(self._clock.monotonic())
        if len(self._sent) > self._limit:
            del self._sent[0]


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


#: How close (seconds) a journalled connect must lie to a slot this process gave the same session to be
#: that connect: the journal stamps the wall clock as the connect starts, right after its slot.
SAME_CONNECT_S: Final = 1.0


class ConnectWindow:
    """At most ``limit`` new connections per deployment in any ``window_s`` seconds (§8: Genesys allows
    1000 new WebSocket connections per deployment per minute, configurable on their side).

    Every connect of every session (start, reconnect, resume) takes a slot here first, so the limit is
    respected, never discovered as HTTP 429s. Exact sliding window: a slot at ``t`` is granted only if
    fewer than ``limit`` slots lie in ``(t - window_s, t]``. Pure bookkeeping on the injected clock, like
    :class:`ConnectPacer`; memory is at most ``limit`` timestamps per deployment, plus the slots each session
    was given in the last window (so that :meth:`restore` does not count this process's own connects twice).
    """

    def __init__(self, *, limit: int, clock: Clock, window_s: float = 60.0) -> None:
        self._limit = limit
        self._window = window_s
        self._clock = clock
        self._slots: dict[str, deque[float]] = {}
        self._given: dict[str, tuple[float, ...]] = {}  # session -> its slots in the last window, oldest first
        self._given_order: deque[tuple[float, str]] = deque()

    @property
    def limit(self) -> int:
        """Connections allowed per deployment in any window."""
        return self._limit

    @property
    def window_s(self) -> float:
        """The window's length in seconds."""
        return self._window

    def restore(self, deployment_id: str, ages_s: Iterable[float], *, session_id: str | None = None) -> None:
        """Count connects made ``ages_s`` seconds ago (from the journal), so a restart or a failover within the
        window cannot exceed the limit. Ages outside the window are ignored, and so are ``session_id``'s
        connects that this window counted itself (a partition this process had, gave up and took back)."""
        now = self._clock.monotonic()
        given = self._given.get(session_id, ()) if session_id is not None else ()
        past = [
            now - age
            for age in ages_s
            if 0.0 <= age < self._window and not any(abs(now - age - slot) <= SAME_CONNECT_S for slot in given)
        ]
        if not past:
            return
        slots = self._slots.setdefault(deployment_id, deque())
        merged = sorted((*slots, *past))[-self._limit :]  # only the newest `limit` slots can constrain
        slots.clear()
        slots.extend(merged)

    def set_limit(self, limit: int) -> None:
        """Change the limit (a replica's share of the deployment's, as replicas come and go); slots already
        taken keep counting against the new limit."""
        self._limit = max(1, limit)

    def reserve(self, deployment_id: str, session_id: str | None = None) -> float:
        """Take the next slot for ``deployment_id`` (for ``session_id``, remembered for :meth:`restore`);
        return how long to wait for it (0.0 when it is now)."""
        now = self._clock.monotonic()
        self._forget_given(now)
        slots = self._slots.setdefault(deployment_id, deque())
        while slots and slots[0] <= now - self._window:
            slots.popleft()
        slot = now if len(slots) < self._limit else max(now, slots[-self._limit] + self._window)
        slots.append(slot)
        while len(slots) > self._limit:  # only the newest `limit` slots can constrain the next one
            slots.popleft()
        if session_id is not None:
            # A tuple, not a deque: one per session with a recent connect, and a deque costs 600 bytes.
            self._given[session_id] = (*self._given.get(session_id, ()), slot)[-RECENT_CONNECTS_KEPT:]
            self._given_order.append((slot, session_id))
        return slot - now

    def _forget_given(self, now: float) -> None:
        horizon = now - self._window
        order = self._given_order
        while order and order[0][0] <= horizon:
            _, session_id = order.popleft()
            slots = self._given.get(session_id)
            if slots is None:
                continue
            kept = tuple(slot for slot in slots if slot > horizon)
            if kept:
                self._given[session_id] = kept
            else:
                del self._given[session_id]


class Offer(enum.Enum):
    """The result of :meth:`Inbox.offer`."""

    ACCEPTED = "accepted"
    FULL = "full"
    CLOSED = "closed"


class Inbox:
    """Bounded FIFO of envelopes with close semantics."""

    __slots__ = ("_closed", "_items", "_maxsize", "_wakeup")

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        # A list, not a deque: an inbox holds a few envelopes at most (``maxsize``, small), every session has
        # one for its whole life, and an empty deque costs 600 bytes where an empty list costs 56.
        self._items: list[Envelope] = []
        self._wakeup = Signal()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, envelope: Envelope) -> Offer:
        """Append without waiting; ``FULL`` and ``CLOSED`` leave the envelope to the caller."""
        if self._closed:
            return Offer.CLOSED
        if len(self._items) >= self._maxsize:
            return Offer.FULL
        self._items.append(envelope)
        self._wakeup.set()
        return Offer.ACCEPTED

    async def next(self) -> Envelope | None:
        """The oldest envelope, waiting for one; ``None`` once closed (queued ones stay for :meth:`drain`)."""
        while not self._closed:
            if self._items:
                return self._items.pop(0)
            self._wakeup.clear()
            await self._wakeup.wait()
        return None

    def close(self) -> None:
        """Stop handing out envelopes; wakes the consumer."""
        self._closed = True
        self._wakeup.set()

    def drain(self) -> list[Envelope]:
        """Remove and return every queued envelope (never started)."""
        items, self._items = self._items, []
        return items
