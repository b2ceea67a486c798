"""In-memory stand-ins for the journal, for tests (and for a daemon run without durability).

* :class:`MemorySessionStore` is a whole :class:`bridge.ports.SessionStore`: a dict of newest records plus
  the history of every save, with :meth:`MemorySessionStore.wait_for` so a test can await a checkpoint
  instead of sleeping.
* :class:`MemoryJournalLog` is a :class:`bridge.store.journal.JournalLog` in a list: it lets
  :class:`bridge.store.journal.JournalStore` (encryption, folding, coalescing) run without a broker, and
  lets a test inject a failing append or a corrupt body.

Neither survives the process, by design.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bridge.errors import BrokerUnavailable
from bridge.record import SessionRecord

__all__ = ["MemoryJournalLog", "MemorySessionStore"]


class MemorySessionStore:
    """A :class:`bridge.ports.SessionStore` in a dict. ``records`` maps session id to its newest record;
    ``history`` lists every saved record in order (a test may assert on checkpoints).

    ``initial`` seeds the store as if a previous process had saved those records (for recovery tests).
    """

    def __init__(self, initial: list[SessionRecord] | None = None) -> None:
        self.records: dict[str, SessionRecord] = {}
        self.history: list[SessionRecord] = []
        self._changed = asyncio.Condition()
        for record in initial or ():
            self.records[record.session_id] = record

    async def save(self, record: SessionRecord) -> None:
        """Keep ``record`` as its session's newest, and wake :meth:`wait_for` callers."""
        async with self._changed:
            self.records[record.session_id] = record
            self.history.append(record)
            self._changed.notify_all()

    async def load_live(self) -> list[SessionRecord]:
        """Every newest record that is not closed, in first-save order."""
        return [r for r in self.records.values() if not r.closed]

    async def wait_for(self, predicate: Callable[[SessionRecord], bool]) -> SessionRecord:
        """Wait until a saved record satisfies ``predicate`` (already saved ones count); return it.

        Bound the wait with ``asyncio.timeout`` in the test; this never times out by itself.
        """
        async with self._changed:
            while True:
                for record in reversed(self.history):
                    if predicate(record):
                        return record
                await self._changed.wait()


class MemoryJournalLog:
    """A :class:`bridge.store.journal.JournalLog` in a list. ``bodies`` is the log; tests may append raw
    bytes to it (a corrupt record) or set ``fail_appends`` to make the next appends raise
    :class:`BrokerUnavailable`. ``gate``, when set, holds every append until the test sets it;
    ``append_entered`` is set once an append began.
    """

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.fail_appends = 0
        self.appends = 0
        self.gate: asyncio.Event | None = None
        self.append_entered = asyncio.Event()

    async def append(self, body: bytes) -> None:
        """Append ``body``: after ``gate`` opens; raises instead while ``fail_appends`` is positive."""
        self.append_entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_appends > 0:
            self.fail_appends -= 1
            raise BrokerUnavailable("memory journal: injected append failure")
        self.appends += 1
        self.bodies.append(body)

    async def replay(self, visit: Callable[[bytes], None]) -> None:
        """Visit every body appended before the call."""
        for body in list(self.bodies):
            visit(body)
