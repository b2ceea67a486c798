"""Group commit: concurrent appends to the journal share one write and one confirm (docs/durability.md).

Every session saves its own record, and at load hundreds of sessions save at once. Each save on its own costs
a stream publish and a publisher confirm, and the publish, not the record, is most of that cost. So appends
made while the log is busy are gathered into one *batch*, written as one stream message:

* The first append of a batch leads it: it waits for one of ``in_flight`` write slots, and every append made
  meanwhile joins its batch. Once it has a slot the batch closes, is written, and every member returns (or
  raises) with the write's result.
* So a journal with a free slot writes a record at once, alone, at no cost over a plain write, and a busy one
  writes fewer, larger messages: the busier, the larger, bounded by ``max_records`` and ``max_bytes``.
* Nothing about a save changes for its caller: ``append`` returns once *its* record is durable, and raises
  what the write raised. The journal store keeps one write per session in flight, so a batch never holds two
  records of one session and per-session order is the order of the saves.
* A leader cancelled before its write went out (a session stopped mid-save) hands its batch on: the members
  start over, and one of them leads. A leader cancelled during the write stops waiting for it: whether it
  reaches the broker is unknown to the members (a publish already written goes on), so they write their
  records again. A record written twice is harmless (the newest record of a session wins). A cancelled
  member never affects the write.

Pure asyncio over an injected ``write``; no I/O here. ``bridge.amqp.journal.StreamJournal`` uses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

__all__ = ["BATCHES_IN_FLIGHT", "BATCH_MAX_BYTES", "BATCH_MAX_RECORDS", "GroupCommit"]

#: Records in one batch at most: a replay visits them one by one, so this only bounds one message's size.
BATCH_MAX_RECORDS: Final = 256
#: Bytes of records in one batch at most (RabbitMQ's default largest message is 128 MiB; a stream reader's
#: prefetch counts messages, so a replay holds at most prefetch × this in memory).
BATCH_MAX_BYTES: Final = 512 * 1024
#: Batches written at once. One would gather the most, but every save would then wait for the confirm of the
#: batch before its own; two keep the log busy while the next batch gathers (measured: docs/performance.md).
BATCHES_IN_FLIGHT: Final = 2


class _Handover(Exception):
    """The batch's leader was cancelled: its members must append again (never leaves :class:`GroupCommit`)."""


class _Batch:
    __slots__ = ("bodies", "done", "size")

    def __init__(self, body: bytes) -> None:
        self.bodies = [body]
        self.size = len(body)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def fail(self, exc: BaseException) -> None:
        if len(self.bodies) > 1:  # only members await ``done``; a leader alone needs no answer
            self.done.set_exception(exc)
            self.done.exception()  # retrieved: a member cancelled meanwhile must not log it as lost


class GroupCommit:
    """Appends of bodies, gathered into batches for ``write``.

    ``write`` must write every body it is given durably, in one operation, and raise if it did not; it is
    called with at most ``max_records`` bodies of at most ``max_bytes`` together (one body alone may be
    larger), and by at most ``in_flight`` callers at once.
    """

    def __init__(
        self,
        write: Callable[[list[bytes]], Awaitable[None]],
        *,
        max_records: int = BATCH_MAX_RECORDS,
        max_bytes: int = BATCH_MAX_BYTES,
        in_flight: int = BATCHES_IN_FLIGHT,
    ) -> None:
        self._write = write
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._slots = asyncio.Semaphore(in_flight)
        self._open: _Batch | None = None
        self._writes = 0

    @property
    def writes(self) -> int:
        """Writes begun so far (each one batch)."""
        return self._writes

    async def append(self, body: bytes) -> None:
        """Write ``body`` with whatever else is being appended; return once the write that held it succeeded.

        Raises what ``write`` raised for its batch. Cancelling the caller loses no other caller's record: a
        cancelled member leaves the write alone, and a cancelled leader's members write again.
        """
        while True:
            batch = self._open
            if batch is None or not self._fits(batch, body):
                batch = self._open = _Batch(body)
                await self._lead(batch)
                return
            batch.bodies.append(body)
            batch.size += len(body)
            try:
                await asyncio.shield(batch.done)
            except _Handover:
                continue
            return

    def _fits(self, batch: _Batch, body: bytes) -> bool:
        return len(batch.bodies) < self._max_records and batch.size + len(body) <= self._max_bytes

    async def _lead(self, batch: _Batch) -> None:
        try:
            async with self._slots:
                self._close(batch)
                self._writes += 1
                await self._write(batch.bodies)
        except BaseException as exc:
            self._close(batch)
            # A cancelled leader's members append again; any other failure is theirs too.
            batch.fail(_Handover() if isinstance(exc, asyncio.CancelledError) else exc)
            raise
        if len(batch.bodies) > 1:
            batch.done.set_result(None)

    def _close(self, batch: _Batch) -> None:
        if self._open is batch:
            self._open = None
