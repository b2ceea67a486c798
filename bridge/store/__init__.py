"""Durable session records (docs/durability.md): the journal store, its codec and keys, and in-memory fakes.

Wiring, done by the daemon only::

    keys = load_keys(settings)                      # StateKeyError before any connection opens
    async with open_stream_journal(settings) as log:  # bridge.amqp.journal: its own connection
        store = JournalStore(log, keys, metrics=metrics, clock=clock)
        live = await store.load_live()              # StateKeyError on a wrong key
        ...                                         # resume `live`; save() on every record change;
        await store.rejournal(older_than_s=settings.rejournal_interval_s)   # every interval
        await store.flush()                         # on SIGTERM, before closing the log

See docs/durability.md for the guarantees and their limits.
"""

from __future__ import annotations

from bridge.store.crypto import KeyRing, generate_key, load_keys
from bridge.store.journal import JournalLog, JournalStore
from bridge.store.memory import MemoryJournalLog, MemorySessionStore

__all__ = [
    "JournalLog",
    "JournalStore",
    "KeyRing",
    "MemoryJournalLog",
    "MemorySessionStore",
    "generate_key",
    "load_keys",
]
