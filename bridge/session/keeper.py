"""Keeps one session's :class:`~bridge.session.record.SessionRecord` current and durable.

The record is immutable; the keeper swaps in ``model_copy(update=...)`` snapshots, so a store always
persists a consistent one. It also owns the two counters that must survive a restart:

- **seq** is handed out in blocks (hi-lo): the record stores the *reserved* high-water mark, saved before
  any number of a new block is used. After a crash, numbering continues above everything published, so
  ``seq`` stays monotonic (a gap is possible, a repeat is not).
- **seen ids**: a Genesys message id is marked seen only after its event was confirmed by the broker
  (docs/durability.md); :meth:`checkpoint` then saves the record.
- **recent outcomes**: the settled outcome of each command (:meth:`remember_outcome`), saved before the
  command is acked, so a redelivery to the next process is answered instead of executed again.

Callers: the session actor, from its own tasks. Save failures (a store error, or the journal's broker
blipping: any ``BridgeError``) are logged and counted, never fatal: the session keeps running, the record
stays pending in the store, and the next save or re-journal carries the newest snapshot.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog

from bridge.errors import BridgeError
from bridge.observability.metrics import Metrics
from bridge.ports import Clock, SessionStore
from bridge.session.dedupe import RecentIds
from bridge.session.record import RECENT_OUTCOMES_KEPT, SessionRecord, SettledOutcome

__all__ = ["SEQ_BLOCK", "RecordKeeper"]

#: seq numbers reserved per store write. Bigger: fewer writes; the cost is a larger gap after a crash.
SEQ_BLOCK = 64

log = structlog.get_logger(__name__)


class RecordKeeper:
    """The live record of one session, its seq counter and its recent-id set."""

    def __init__(
        self, record: SessionRecord, *, clock: Clock, store: SessionStore | None, metrics: Metrics | None = None
    ) -> None:
        self._record = record
        self._clock = clock
        self._store = store
        self._metrics = metrics
        self._seq = record.seq  # last number handed out; the record holds the reserved mark
        self.seen = RecentIds(record.recent_message_ids)

    @property
    def record(self) -> SessionRecord:
        return self._record

    @property
    def session_id(self) -> str:
        return self._record.session_id

    def update(self, **changes: Any) -> SessionRecord:
        """Swap in a copy with ``changes`` (not saved yet; call :meth:`save`)."""
        self._record = self._record.model_copy(update={**changes, "updated_at": self._clock.now()})
        return self._record

    async def save(self) -> bool:
        """Persist the current snapshot when a store is configured; False when that failed (logged, counted).

        Never raises a ``BridgeError``: the journal raises ``BrokerUnavailable``/``PublishTimeout`` when its
        broker blips, and a broker blip must never end a Genesys session. The store keeps the record pending.
        """
        if self._store is None:
            return True
        try:
            await self._store.save(self._record)
        except BridgeError as exc:
            log.error("session_record_save_failed", error=str(exc), error_type=type(exc).__name__)
            if self._metrics is not None:
                self._metrics.record_save_failures.inc()
            return False
        return True

    async def next_seq(self) -> int:
        """The next event seq. Reserves (and saves) a new block first when the current one is spent."""
        self._seq += 1
        if self._seq > self._record.seq:
            self.update(seq=self._seq + SEQ_BLOCK - 1)
            await self.save()
        return self._seq

    def remember_outcome(self, outcome: SettledOutcome) -> None:
        """Add ``outcome`` to the record's bounded tail (not saved yet; call :meth:`save` before the ack)."""
        kept = [o for o in self._record.recent_outcomes if o.command_id != outcome.command_id]
        kept.append(outcome)
        self.update(recent_outcomes=tuple(kept[-RECENT_OUTCOMES_KEPT:]))

    def settled(self, command_id: str) -> SettledOutcome | None:
        """The settled outcome of ``command_id`` kept in the record (perhaps by a previous process)."""
        return next((o for o in reversed(self._record.recent_outcomes) if o.command_id == command_id), None)

    def is_seen(self, message_id: str | None) -> bool:
        return message_id is not None and message_id in self.seen

    def is_older_than_checkpoint(self, when: datetime | None) -> bool:
        """True when ``when`` is before the newest message published (a replayed frame, §11.3 / issue)."""
        last = self._record.last_message_time
        return when is not None and last is not None and when < last

    async def checkpoint(self, message_id: str, when: datetime | None) -> None:
        """Mark ``message_id`` seen (its event is confirmed) and save the record."""
        self.mark_seen(message_id, when)
        await self.save()

    def note_configured(self, *, ttl_s: int | None, expires_at: datetime | None) -> None:
        """Remember Genesys' session timing from a ``SessionResponse`` (§5.1); not saved yet."""
        ttl_s = ttl_s if ttl_s is not None else self._record.genesys_ttl_s
        if expires_at is None and ttl_s is not None:
            expires_at = self._clock.now() + timedelta(seconds=ttl_s)
        self.update(genesys_ttl_s=ttl_s, expires_at=expires_at)

    def expired_by_now(self) -> bool:
        """True when the session's known expiry has passed: a resume answered ``newSession:true`` then means
        Genesys expired it (§7 "inactivity > durationSeconds"), not that the conversation was lost otherwise."""
        expires_at = self._record.expires_at
        return expires_at is not None and self._clock.now() >= expires_at

    def mark_seen(self, message_id: str, when: datetime | None) -> None:
        """Mark ``message_id`` seen without saving (the caller saves, e.g. with a command's outcome).

        A message is activity, which moves Genesys' expiry on by the TTL (§7, as KMP's SessionDurationHandler).
        """
        self.seen.add(message_id)
        changes: dict[str, Any] = {"last_message_id": message_id, "recent_message_ids": self.seen.snapshot()}
        if self._record.genesys_ttl_s is not None:
            changes["expires_at"] = self._clock.now() + timedelta(seconds=self._record.genesys_ttl_s)
        last = self._record.last_message_time
        if when is not None and (last is None or when >= last):
            changes["last_message_time"] = when
        self.update(**changes)
