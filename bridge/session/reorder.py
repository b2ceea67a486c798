"""Agent messages put back into Genesys' order: ``channel.time`` within a short window (§10).

Genesys promises no ordering of the frames it pushes: two agent messages written a moment apart can
arrive swapped. With a window of ``w`` seconds, each live message is held for ``w`` after it arrived; when
one's hold runs out, it is released together with every held message Genesys stamped no later than it,
oldest ``channel.time`` first. A message that arrives more than ``w`` late is still published, just out of
order: the window bounds the latency cost (at most ``w`` per message), not the disorder Genesys may cause.

Pure: the caller passes the clock reading in and publishes what comes out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridge.genesys.frames import StructuredMessage
from bridge.session.backfill import message_time

__all__ = ["REORDER_MAX_HELD", "ReorderBuffer"]

#: Messages one session may hold for reordering; a burst past it is released at once, in order.
REORDER_MAX_HELD = 100

_NO_TIME = datetime.min.replace(tzinfo=UTC)  # a message without channel.time sorts first


@dataclass(slots=True)
class _Held:
    due: float
    time: datetime
    arrival: int
    message: StructuredMessage = field(compare=False)


class ReorderBuffer:
    """Held live messages of one session, released in ``channel.time`` order once their hold ran out."""

    def __init__(self, window_s: float, *, limit: int = REORDER_MAX_HELD) -> None:
        self._window_s = window_s
        self._limit = limit
        self._held: list[_Held] = []
        self._arrivals = 0

    def __len__(self) -> int:
        return len(self._held)

    def add(self, message: StructuredMessage, now: float) -> float:
        """Hold ``message`` (arrived at ``now``); return when the caller should call :meth:`due` next."""
        self._arrivals += 1
        self._held.append(_Held(now + self._window_s, message_time(message) or _NO_TIME, self._arrivals, message))
        return now + self._window_s

    def due(self, now: float) -> list[StructuredMessage]:
        """What to publish at ``now``, in order: every message stamped no later than one whose hold ran out.

        Past the size limit, everything is released (the bound wins over the order).
        """
        if len(self._held) > self._limit:
            return self.drain()
        expired = [h for h in self._held if h.due <= now]
        if not expired:
            return []
        cutoff = max(h.time for h in expired)
        out = sorted((h for h in self._held if h.time <= cutoff), key=lambda h: (h.time, h.arrival))
        self._held = [h for h in self._held if h.time > cutoff]
        return [h.message for h in out]

    def drain(self) -> list[StructuredMessage]:
        """Everything held, in order (a Disconnect, or the session ending)."""
        out = sorted(self._held, key=lambda h: (h.time, h.arrival))
        self._held = []
        return [h.message for h in out]
