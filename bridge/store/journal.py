"""The session journal: a :class:`bridge.ports.SessionStore` on top of an append-only log (docs/durability.md).

The log is a small port, :class:`JournalLog`: append a body durably, and replay every body appended before
the replay began. ``bridge.amqp.journal.StreamJournal`` implements it on a RabbitMQ stream;
``bridge.store.memory.MemoryJournalLog`` in memory, for tests. This module holds the rules and no I/O:

* **Newest wins.** Records are folded by ``session_id`` in log order; the last record of a session is its
  state. A session whose last record is closed is dropped, and is never resumed.
* **Writes for one session are serialised and coalesced.** ``save`` returns once the log confirmed the
  record, or a newer record of the same session. While one write is in flight, newer saves of that session
  wait, and only the newest of them is written next. So the log's order per session is the order of the
  ``save`` calls, and a burst costs at most two writes.
* **Re-journalling** (:meth:`JournalStore.rejournal`) appends every live session's newest record again, so
  retention by age never drops a session that is still open, and records move to the current key. It also
  retries every closed record whose write failed: until the log confirms the close, a restart would resume
  the ended session. A closed record is forgotten once confirmed, so memory stays bounded by the sessions
  that are open or whose close is not yet durable.
* **Unreadable records are skipped, counted and logged** (``journal_record_skipped``), never resumed. If the
  newest record of a session is unreadable, that session is skipped, even when an older record is readable:
  an older record may predate the session's end. If live records exist and *none* can be decrypted with the
  configured keys, :meth:`load_live` raises :class:`StateKeyError` (a wrong key is a startup error, never a
  silent fresh start). Rules and reasons: docs/durability.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, Protocol

import structlog

from bridge.errors import BridgeError, StateKeyError
from bridge.observability.metrics import Metrics
from bridge.ports import Clock
from bridge.record import SessionRecord
from bridge.store.codec import (
    VERSION,
    CorruptRecord,
    MarkerEnvelope,
    RecordFormat,
    SessionEnvelope,
    encode_record,
    open_record,
    parse_envelope,
)
from bridge.store.crypto import KeyRing, SealError
from bridge.tasks import TaskGroup, stop_if_asked

__all__ = ["JournalLog", "JournalStore"]

_log = structlog.get_logger("bridge.store.journal")

#: Records written at once by :meth:`JournalStore.rejournal`: enough to keep confirms pipelined, few enough
#: not to crowd out the sessions' own saves.
REJOURNAL_CONCURRENCY: Final = 32


class JournalLog(Protocol):
    """An append-only, durable log of opaque bodies (the journal's storage)."""

    async def append(self, body: bytes) -> None:
        """Append one body; return only once it is durable (publisher confirm).

        Raises ``BrokerError`` subclasses when the broker is away or does not confirm in time (retryable,
        see ``bridge.errors.is_retryable``), ``StoreError`` when the log cannot be used at all.
        """
        ...

    async def replay(self, visit: Callable[[bytes], None]) -> None:
        """Call ``visit`` once per body appended before this call began, in append order, then return.

        Bodies appended concurrently may or may not be visited. ``visit`` must not block.
        """
        ...


@dataclass(slots=True)
class _Slot:
    """Write state of one session. ``gen`` numbers saves; ``confirmed`` is the newest one known durable."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    gen: int = 0
    confirmed: int = 0
    pending: tuple[int, SessionRecord] | None = None
    users: int = 0


@dataclass(slots=True)
class _Fold:
    """Replay state: the newest envelope per session, plus counts for the summary log."""

    newest: dict[str, SessionEnvelope] = field(default_factory=dict)
    bodies: int = 0
    markers: int = 0
    corrupt: int = 0


class JournalStore:
    """Durable session records on a :class:`JournalLog`. Implements :class:`bridge.ports.SessionStore`.

    The caller (the daemon) must: call :meth:`load_live` once at start, before the first :meth:`save`; save
    through this store every snapshot of every session (so it knows the newest one); call :meth:`rejournal`
    every ``rejournal_interval_s``; and await :meth:`flush` on shutdown before closing the log.

    ``belongs`` says which sessions the log holds for this store: a partition's stream can still hold records
    of sessions that a repartition moved to another partition (docs/scaling.md). :meth:`load_live` leaves
    those out, so they are neither resumed nor written again by :meth:`rejournal`. ``record_format`` is the
    format every save and re-journal of a live session writes (``BRIDGE_JOURNAL_FORMAT``); a close is always
    format 1. Records of both formats are read.
    """

    def __init__(
        self,
        log: JournalLog,
        keys: KeyRing,
        *,
        metrics: Metrics,
        clock: Clock,
        record_format: RecordFormat = VERSION,
        belongs: Callable[[str], bool] | None = None,
    ) -> None:
        self._journal = log
        self._format: RecordFormat = record_format
        self._belongs = belongs
        self._keys = keys
        self._metrics = metrics
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        # Newest record handed to save() (or loaded) per session: the source of truth for every retry (a
        # failed write's record is not kept anywhere else once its slot has no users). A closed one stays
        # until the log confirmed it, then is forgotten: bounded by the live sessions plus the unconfirmed
        # closes.
        self._latest: dict[str, SessionRecord] = {}
        # Clock.monotonic() of each live session's last confirmed write: re-journal skips fresh ones.
        self._written: dict[str, float] = {}
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # -- writing -------------------------------------------------------------------------------------

    async def save(self, record: SessionRecord) -> None:
        """Persist ``record`` (the newest snapshot of its session); return once it, or a newer one, is durable.

        Raises what :meth:`JournalLog.append` raises; the record then stays pending, and the next save or
        re-journal of the session writes it (or a newer one).
        """
        self._latest[record.session_id] = record
        await self._submit(record)

    async def rejournal(self, *, older_than_s: float = 0.0) -> int:
        """Append again the newest record of every live session not written in the last ``older_than_s``,
        and retry every closed record whose write failed.

        The daemon calls it every ``rejournal_interval_s`` with ``older_than_s=rejournal_interval_s``: then
        every live session has a record at most two intervals old, and busy sessions (which save anyway)
        cost nothing. An unconfirmed close is retried whatever its age (a restart before it is durable
        would resume the ended session), unless its write is in flight right now. Uses the store's own
        newest snapshot, never a caller's copy, so a re-journal racing a save or a close cannot write a
        stale record after a newer one. Returns how many were written; failures are logged and the first is
        raised after every other session was tried.
        """
        horizon = self._clock.monotonic() - older_than_s if older_than_s > 0 else float("inf")
        ids = iter([sid for sid, rec in self._latest.items() if self._due(sid, rec, horizon)])
        written = 0
        errors: list[BridgeError] = []

        async def worker() -> None:
            nonlocal written
            for sid in ids:
                stop_if_asked()  # a cancel of the pass that a write took as an error, or as a success
                record = self._latest.get(sid)
                if record is None or (record.closed and sid in self._slots):
                    # Gone: a close was confirmed since the snapshot of ids. Closing: its write is in flight
                    # and either confirms it or leaves it in _latest for the next pass. Otherwise the newest
                    # record is written, a close included, so nothing can revive an ended session.
                    continue
                try:
                    await self._submit(record)
                except BridgeError as exc:
                    errors.append(exc)
                else:
                    written += 1

        async with TaskGroup() as tg:
            for _ in range(REJOURNAL_CONCURRENCY):
                tg.create_task(worker())
        if errors:
            _log.error("journal_rejournal_incomplete", written=written, failed=len(errors), error=str(errors[0]))
            raise errors[0]
        _log.info("journal_rejournalled", written=written)
        return written

    def _due(self, sid: str, record: SessionRecord, horizon: float) -> bool:
        """Whether :meth:`rejournal` writes ``record`` (its session's newest, not yet forgotten)."""
        if record.closed:
            # Still in _latest, so not confirmed: retry it, unless a write of it is in flight right now.
            return sid not in self._slots
        return self._written.get(sid, float("-inf")) <= horizon

    async def flush(self) -> None:
        """Wait until no save is in flight (SIGTERM: call after the sessions stopped saving)."""
        await self._idle.wait()

    async def _submit(self, record: SessionRecord) -> None:
        sid = record.session_id
        slot = self._slots.get(sid)
        if slot is None:
            slot = self._slots[sid] = _Slot()
        slot.gen += 1
        gen = slot.gen
        slot.pending = (gen, record)  # replaces an older pending record: the newest wins
        slot.users += 1
        self._inflight += 1
        self._idle.clear()
        try:
            async with slot.lock:
                if slot.confirmed >= gen:
                    return  # a newer record of this session was confirmed while we waited
                # Whoever took an older pending record either confirmed it (then ``confirmed`` covers it)
                # or failed and put it back, so there is a pending record now, at least as new as ours.
                assert slot.pending is not None
                taken_gen, taken = slot.pending
                slot.pending = None
                started = self._clock.monotonic()
                try:
                    await self._journal.append(
                        encode_record(
                            taken, self._keys, written_at=self._clock.now(), record_format=self._format_of(taken)
                        )
                    )
                except BaseException:
                    if slot.pending is None:  # nothing newer arrived: leave ours for a waiting writer
                        slot.pending = (taken_gen, taken)
                    # With no waiter the slot (and this pending record) goes below; _latest still holds the
                    # newest record, and the next save or rejournal() writes it (a closed one included).
                    raise
                self._metrics.journal_write_latency.observe(self._clock.monotonic() - started)
                slot.confirmed = taken_gen
                if taken.closed:
                    self._written.pop(sid, None)
                    if self._latest.get(sid) is taken:
                        del self._latest[sid]
                else:
                    self._written[sid] = self._clock.monotonic()
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._slots[sid]
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    def _format_of(self, record: SessionRecord) -> RecordFormat:
        # A close is written in format 1 whatever the setting: a release that reads only format 1 skips a
        # binary record without knowing its session, and would resume the session from an older record. A
        # session's last record must therefore be one that every release reads (docs/durability.md).
        return VERSION if record.closed else self._format

    # -- reading -------------------------------------------------------------------------------------

    async def load_live(self) -> list[SessionRecord]:
        """Replay the journal; return every session whose newest record is live, oldest-first by log order.

        Raises:
            StateKeyError: live records exist and none opens with the configured keys.
            BrokerError, StoreError: the log could not be replayed.
        """
        started = time.perf_counter()
        fold = _Fold()
        await self._journal.replay(lambda body: self._visit(fold, body))
        live: list[SessionRecord] = []
        sealed_shut: list[str] = []
        decrypted = closed = elsewhere = 0
        for sid, envelope in fold.newest.items():
            if envelope.closed:
                closed += 1
                continue
            if self._belongs is not None and not self._belongs(sid):
                elsewhere += 1
                continue
            try:
                record = open_record(envelope, self._keys)
            except SealError:
                sealed_shut.append(sid)
                continue
            except CorruptRecord as exc:
                decrypted += 1
                self._skip(fold, exc.reason, sid)
                continue
            decrypted += 1
            live.append(record)
        if sealed_shut and decrypted == 0:
            raise StateKeyError(
                f"none of the {len(sealed_shut)} live session records in the journal opens with the configured "
                f"state keys (fingerprints {', '.join(self._keys.fingerprints)}): BRIDGE_STATE_KEY is wrong, "
                "or the key they were written with is missing from BRIDGE_STATE_OLD_KEYS"
            )
        for sid in sealed_shut:
            self._skip(fold, "undecryptable", sid)
        for record in live:
            self._latest.setdefault(record.session_id, record)  # a save() since start is newer
        _log.info(
            "journal_replayed",
            records=fold.bodies,
            markers=fold.markers,
            sessions=len(fold.newest),
            live=len(live),
            closed=closed,
            elsewhere=elsewhere,
            corrupt=fold.corrupt,
            duration_s=round(time.perf_counter() - started, 3),
        )
        return live

    def _visit(self, fold: _Fold, body: bytes) -> None:
        fold.bodies += 1
        try:
            envelope = parse_envelope(body)
        except CorruptRecord as exc:
            if exc.session_id is not None:
                # The session's newest record is unreadable: an older one must not stand in for it (it may
                # predate the session's end). A later readable record brings the session back.
                fold.newest.pop(exc.session_id, None)
            self._skip(fold, exc.reason, exc.session_id)
            return
        match envelope:
            case MarkerEnvelope():
                fold.markers += 1
            case SessionEnvelope(session_id=sid):
                # pop + insert keeps dict order = order of each session's newest record
                fold.newest.pop(sid, None)
                fold.newest[sid] = envelope

    def _skip(self, fold: _Fold, reason: str, session_id: str | None) -> None:
        fold.corrupt += 1
        self._metrics.journal_corrupt.inc()
        _log.error("journal_record_skipped", reason=reason, session_id=session_id)

    # -- introspection -------------------------------------------------------------------------------

    def live_sessions(self) -> Iterator[SessionRecord]:
        """The newest known record of every live session (what :meth:`rejournal` would write)."""
        return (rec for rec in list(self._latest.values()) if not rec.closed)
