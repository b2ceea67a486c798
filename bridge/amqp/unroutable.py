"""Routing keys the event exchange just returned as unroutable, for events nobody needs to receive.

``session.state_changed`` is published three times per session start and at every reconnect, and most
deployments bind no queue to it: each of those publishes is a confirmed round trip that the broker returns.
When the event exchange returns one (``mandatory``: no queue is bound to its routing key), the publisher
remembers the routing key for :data:`HOLD_S` and does not publish that event type with that key meanwhile,
counting each one left out in ``genesys_bridge_events_skipped_total``. After the hold the next one is
published again, so a queue bound later receives them from then on, within :data:`HOLD_S`.

Only :data:`SKIPPABLE` types are ever left out: outcomes, messages and the session lifecycle are always
published, returned or not. Pure: the clock is injected.
"""

from __future__ import annotations

from typing import Final

from bridge.ports import Clock

__all__ = ["HOLD_S", "KEYS_MAX", "SKIPPABLE", "UnroutableKeys"]

#: The event types that may be left out while their routing key is unroutable (docs/contract.md calls them
#: informational: drive nothing from them).
SKIPPABLE: Final = frozenset({"session.state_changed"})
#: How long a returned routing key is not published again, in seconds: also the longest a newly bound queue
#: can miss these events.
HOLD_S: Final = 30.0
#: Routing keys remembered at most (one per deployment and route); past it the oldest half is forgotten.
KEYS_MAX: Final = 10_000


class UnroutableKeys:
    """Routing keys returned as unroutable, each held for ``hold_s`` from its return. Use from one event loop."""

    __slots__ = ("_clock", "_hold_s", "_until")

    def __init__(self, clock: Clock, *, hold_s: float = HOLD_S) -> None:
        self._clock = clock
        self._hold_s = hold_s
        self._until: dict[str, float] = {}

    def returned(self, event_type: str, routing_key: str) -> None:
        """The exchange returned an event of ``event_type`` published with ``routing_key``."""
        if event_type not in SKIPPABLE:
            return
        if len(self._until) >= KEYS_MAX:
            for key in list(self._until)[: KEYS_MAX // 2]:  # dicts keep insertion order: the oldest first
                del self._until[key]
        self._until.pop(routing_key, None)
        self._until[routing_key] = self._clock.monotonic() + self._hold_s

    def skips(self, event_type: str, routing_key: str) -> bool:
        """True when an event of ``event_type`` with ``routing_key`` is to be left out now."""
        if event_type not in SKIPPABLE:
            return False
        until = self._until.get(routing_key)
        if until is None:
            return False
        if self._clock.monotonic() < until:
            return True
        del self._until[routing_key]
        return False
