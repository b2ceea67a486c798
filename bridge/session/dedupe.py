"""A bounded set of recently published Genesys message ids (protocol reference §9: dedupe key ``body.id``).

Seeded from ``SessionRecord.recent_message_ids`` so dedupe survives reconnects and restarts; drop-oldest
when full (the bound is the record's tail length, so the record stays small).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

__all__ = ["RECENT_IDS_KEPT", "RecentIds"]

#: How many ids a session remembers. Backfill stops at the first one it meets, so a few dozen suffice.
RECENT_IDS_KEPT = 200


class RecentIds:
    """Insertion-ordered, bounded, drop-oldest. ``in`` is O(1)."""

    def __init__(self, initial: Iterable[str] = (), *, size: int = RECENT_IDS_KEPT) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()
        for message_id in initial:
            self.add(message_id)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message_id: str) -> None:
        """Remember ``message_id`` as the newest; forget the oldest past the bound."""
        self._ids[message_id] = None
        self._ids.move_to_end(message_id)
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)

    def snapshot(self) -> tuple[str, ...]:
        """Oldest first, for ``SessionRecord.recent_message_ids``."""
        return tuple(self._ids)
