"""One timer for every session's keepalives: the WebSocket pings (protocol reference §2.4) and the Genesys
``echo`` (§4.4).

A keepalive kept as a task per session costs a task, its coroutines, a sleeping future and a loop timer
for the session's whole life, about 1.2 KiB each while it waits, and a process holds tens of thousands
(docs/performance.md, memory per session). Here every periodic beat of the process waits in one heap, and
a single loop timer is armed for the earliest: a waiting beat is one small object. What a beat does when
it is due is its owner's business: a session starts a short task in its own TaskGroup, which lives only
for the round trip.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Final

import structlog

__all__ = ["Beat", "Heartbeat"]

log = structlog.get_logger(__name__)

#: Beats due this close after the timer fires run in the same pass: a loop timer may fire up to its
#: clock resolution early, and a pass that found nothing due would re-arm for the same instant.
_SLACK_S: Final = 0.001


class Beat:
    """One periodic callback of a :class:`Heartbeat`. :meth:`cancel` stops it; nothing else changes it."""

    __slots__ = ("_callback", "_heartbeat", "_interval_s")

    def __init__(self, heartbeat: Heartbeat, interval_s: float, callback: Callable[[], None]) -> None:
        self._heartbeat = heartbeat
        self._interval_s = interval_s
        self._callback: Callable[[], None] | None = callback

    @property
    def cancelled(self) -> bool:
        return self._callback is None

    def cancel(self) -> None:
        """Call the callback no more. It is let go of now: a cancelled beat keeps nothing of its owner alive
        until the heap drops it."""
        if self._callback is not None:
            self._callback = None
            self._heartbeat._dropped(self)


class Heartbeat:
    """Periodic beats for one event loop, on one loop timer.

    Caller's duties: use it from the loop it first ran on; cancel every beat when its owner ends.
    """

    __slots__ = ("_cancelled", "_firing", "_heap", "_seq", "_timer", "_timer_at")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Beat]] = []
        self._cancelled = 0  # cancelled beats still in the heap
        self._firing: Beat | None = None  # the beat whose callback runs: out of the heap meanwhile
        self._seq = itertools.count()  # ties keep their order, and beats are never compared
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def __len__(self) -> int:
        """Beats not cancelled."""
        return len(self._heap) - self._cancelled

    def every(self, interval_s: float, callback: Callable[[], None], *, first_s: float) -> Beat:
        """Call ``callback`` ``first_s`` seconds from now, then every ``interval_s`` until the beat is cancelled.

        The callback runs in the loop's own callback: it must be quick and must not block; to do I/O, it
        starts a task its owner owns. An exception it raises is logged and the beat goes on. A loop that
        falls behind does not catch up in a burst: the next call is ``interval_s`` after the late one.

        Raises:
            ValueError: ``interval_s`` is not positive.
        """
        if interval_s <= 0:
            raise ValueError(f"a beat's interval must be positive, not {interval_s}")
        beat = Beat(self, interval_s, callback)
        loop = asyncio.get_running_loop()
        heapq.heappush(self._heap, (loop.time() + max(first_s, 0.0), next(self._seq), beat))
        self._arm(loop)
        return beat

    def _dropped(self, beat: Beat) -> None:
        """A beat was cancelled. Sessions that end leave their beats behind until due (up to an echo interval):
        once they are most of the heap, it is rebuilt without them, so churn cannot grow it."""
        if beat is self._firing:
            return  # cancelled by its own callback: not in the heap, and not put back
        self._cancelled += 1
        if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
            self._heap[:] = [
                entry for entry in self._heap if entry[2]._callback is not None
            ]  # in place: a pass of _fire may be holding the list
            heapq.heapify(self._heap)
            self._cancelled = 0

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._heap:
            return
        earliest = self._heap[0][0]
        if self._timer is not None:
            if self._timer_at <= earliest:
                return
            self._timer.cancel()
        self._timer = loop.call_at(earliest, self._fire, loop)
        self._timer_at = earliest

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        heap = self._heap
        now = loop.time()
        while heap and heap[0][0] <= now + _SLACK_S:
            due, _, beat = heapq.heappop(heap)
            callback = beat._callback
            if callback is None:
                self._cancelled -= 1
                continue
            self._firing = beat
            try:
                callback()
            except Exception:
                log.exception("heartbeat_beat_failed")
            finally:
                self._firing = None
            if beat._callback is not None:
                due += beat._interval_s
                heapq.heappush(heap, (due if due > now else now + beat._interval_s, next(self._seq), beat))
        self._arm(loop)
