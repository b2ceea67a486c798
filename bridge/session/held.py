"""Live events held back while a resumed session catches up on history (protocol reference §4.1, §9).

After a resume, ``getJwt`` and the history pages run *beside* the socket pump, so agent messages keep
arriving live while the backfill is still being fetched. Publishing them at once would publish (and mark
seen) a message *newer* than the ones the backfill is about to publish: ``seq`` order would break, and a
backfill stopping at the first known id would stop at that live message and never publish the older
missed ones. So live messages, typing and Disconnects are held here and released, in arrival order, once
the backfill is published (deduplicated by Genesys id on release).

Bounded: a session holds at most ``limit`` events. When a message or Disconnect does not fit, the hold
is marked ``overflowed`` and the caller must give up this catch-up and reconnect: everything Genesys
sent is in its history, so the next backfill publishes it. A typing indicator that does not fit is just
dropped (ephemeral, §5.3).
"""

from __future__ import annotations

from collections import deque

from bridge.genesys.events import AgentTyping, ProtocolEvent

__all__ = ["HELD_EVENTS_MAX", "HeldEvents"]

#: Live events one session may hold during a catch-up. A backfill takes a few REST round trips; an agent
#: does not write 100 messages meanwhile, so reaching it means something is wrong: reconnect instead.
HELD_EVENTS_MAX = 100


class HeldEvents:
    """A bounded FIFO of live protocol events; one per catch-up. Used from one session's tasks only."""

    def __init__(self, limit: int = HELD_EVENTS_MAX) -> None:
        self._limit = limit
        self._events: deque[ProtocolEvent] = deque()
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._events)

    def add(self, event: ProtocolEvent) -> None:
        """Hold ``event``; past the limit a typing event is dropped, anything else marks ``overflowed``."""
        if len(self._events) >= self._limit:
            if not isinstance(event, AgentTyping):
                self.overflowed = True
            return
        self._events.append(event)

    def pop(self) -> ProtocolEvent | None:
        """The oldest held event, or None when empty."""
        return self._events.popleft() if self._events else None
