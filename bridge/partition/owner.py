"""One partition's ownership: its sessions while this replica is the active consumer of its queue.

:class:`PartitionOwner` is the partition queue consumer's :class:`~bridge.amqp.consumer.Tenure` and
:class:`~bridge.ports.CommandHandler`. While the partition is not ours it holds nothing. On
:meth:`~PartitionOwner.gained` it waits out the fence grace (a predecessor that lost the partition at the
same moment closes its sockets within it), replays the partition's journal stream, and resumes every live
session of the partition in a registry of its own (paced, within the connect window every partition of
the process shares). Commands are handed over only after that, so none is answered ``unknown_session``
for a session still being loaded. On :meth:`~PartitionOwner.ended` it fences: the registry drains (in-flight
commands settle, or are cut after the fence grace when the link is gone), sockets close without ending
the sessions and without ``closeSession``, and the journal is flushed. docs/scaling.md has the guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Literal, Protocol

import structlog

from bridge.config import Settings
from bridge.errors import BridgeError, is_retryable
from bridge.observability.metrics import Metrics
from bridge.ports import Envelope, SessionStore
from bridge.session.ports import SessionDeps
from bridge.session.registry import Census, SessionRegistry

__all__ = ["PartitionJournal", "PartitionJournals", "PartitionOwner"]

log = structlog.get_logger(__name__)


class PartitionJournal(SessionStore, Protocol):
    """A partition's journal: a session store that can re-write its live sessions (retention)."""

    async def rejournal(self, *, older_than_s: float = 0.0) -> int:
        """Append again every live session not written in the last ``older_than_s`` seconds."""
        ...


class PartitionJournals(Protocol):
    """Opens the journal of one partition for as long as it is owned (flushed and closed on exit)."""

    def open(self, partition: int) -> AbstractAsyncContextManager[PartitionJournal]:
        """The journal of ``partition``. Raises ``BridgeError`` when it cannot be opened."""
        ...


#: Whether the owner takes a partition it just became the active consumer of (False: hand it on).
Accept = Callable[["PartitionOwner"], bool]


class PartitionOwner:
    """The sessions of partition ``index`` while this replica owns it.

    Args:
        index: the partition.
        settings: ``partitions``, ``fence_grace_s``, ``drain_timeout_s``.
        deps: the process's shared session seams (idempotency cache, connect pacer and window); the
            partition's journal replaces their ``store``.
        census: the process's live sessions, for ``max_sessions``.
        journals: opens the partition's journal; ``None`` when sessions are not durable.
        metrics: partitions owned, ownership changes, sessions moved, failover duration.
        accept: asked when the partition is gained (the fleet declines one above the fair share).
        on_fatal: told of an error no other replica could do better with (a state key that opens nothing, a
            journal stream that cannot be declared): it ends the process.
    """

    def __init__(
        self,
        index: int,
        *,
        settings: Settings,
        deps: SessionDeps,
        census: Census,
        journals: PartitionJournals | None,
        metrics: Metrics,
        accept: Accept,
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        self.index = index
        self._settings = settings
        self._deps = deps
        self._census = census
        self._journals = journals
        self._metrics = metrics
        self._accept = accept
        self._on_fatal = on_fatal
        self._registry: SessionRegistry | None = None
        self._journal: PartitionJournal | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._watch: asyncio.Task[None] | None = None
        self._next_change: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.recovered = False

    @property
    def owned(self) -> bool:
        """True while this replica owns the partition (its sessions are loaded)."""
        return self._registry is not None

    @property
    def registry(self) -> SessionRegistry | None:
        """The partition's sessions while owned."""
        return self._registry

    @property
    def journal(self) -> PartitionJournal | None:
        """The partition's journal while owned (and sessions are durable)."""
        return self._journal

    def __len__(self) -> int:
        return len(self._registry) if self._registry is not None else 0

    def next_change(self) -> asyncio.Future[None]:
        """Done at the next gain, loss or finished recovery of this partition. Take it before looking at the
        owner's state, so a change in between is not missed; never cancel it (it is shared)."""
        return self._next_change

    def _changed(self) -> None:
        done, self._next_change = self._next_change, asyncio.get_running_loop().create_future()
        done.set_result(None)

    # --- CommandHandler ------------------------------------------------------------------------------

    async def submit(self, envelope: Envelope) -> None:
        """Hand a command to the partition's registry (the consumer calls this only while owned)."""
        registry = self._registry
        if registry is None:  # cannot happen: the consumer hands over only between gained and ended
            await envelope.delivery.requeue()
            return
        await registry.submit(envelope)

    # --- Tenure --------------------------------------------------------------------------------------

    async def gained(self, waiting_since: datetime | None) -> bool:
        """Load and resume the partition's sessions; False when it is declined or cannot be loaded."""
        if not self._accept(self):
            log.info("partition_declined", partition=self.index)
            return False
        gained_at = time.monotonic()
        # A predecessor that lost the partition when we got it closes its sockets within the grace.
        await asyncio.sleep(self._settings.fence_grace_s)
        stack = contextlib.AsyncExitStack()
        try:
            journal = await stack.enter_async_context(self._journals.open(self.index)) if self._journals else None
            records = await journal.load_live() if journal is not None else []
            registry = SessionRegistry(dataclasses.replace(self._deps, store=journal), census=self._census)
            await stack.enter_async_context(registry)
        except BridgeError as exc:
            await stack.aclose()
            if not is_retryable(exc):  # a wrong state key, a journal name squatted: no replica does better
                self._on_fatal(exc)
            else:  # the broker went away meanwhile: the partition goes on to whoever is next
                log.error("partition_gain_failed", partition=self.index, error=str(exc), error_type=type(exc).__name__)
            return False
        self._stack, self._registry, self._journal = stack, registry, journal
        await registry.resume(records)
        self._metrics.partitions_owned.inc()
        self._metrics.ownership_changes.labels(change="gained").inc()
        self._metrics.sessions_moved.labels(direction="in").inc(len(records))
        load_s = round(time.monotonic() - gained_at, 3)
        log.info("partition_gained", partition=self.index, sessions=len(records), load_s=load_s)
        self._watch = asyncio.create_task(self._watch_recovery(registry, waiting_since), name=f"recovery:p{self.index}")
        self._changed()
        return True

    async def ended(self, *, link_lost: bool) -> None:
        """Fence: settle or cut in-flight commands, close the sockets without ending sessions, flush."""
        registry, stack = self._registry, self._stack
        if registry is None or stack is None:
            return
        change: Literal["lost", "released"] = "lost" if link_lost else "released"
        sessions = len(registry)
        try:
            await registry.drain(self._settings.fence_grace_s if link_lost else self._settings.drain_timeout_s)
        finally:
            if self._watch is not None:
                self._watch.cancel()
                await asyncio.wait({self._watch})
                self._watch = None
            self._registry = self._journal = self._stack = None
            self.recovered = False
            try:
                await stack.aclose()  # the registry's TaskGroup, then the journal (flushed)
            except Exception:
                log.exception("partition_close_failed", partition=self.index)
            self._metrics.partitions_owned.dec()
            self._metrics.ownership_changes.labels(change=change).inc()
            self._metrics.sessions_moved.labels(direction="out").inc(sessions)
            log.info(f"partition_{change}", partition=self.index, sessions=sessions)
            self._changed()

    # --- helpers -------------------------------------------------------------------------------------

    async def _watch_recovery(self, registry: SessionRegistry, waiting_since: datetime | None) -> None:
        """Once every resumed session is caught up or ended: record the failover duration."""
        await registry.recovered()
        self.recovered = True
        self._changed()
        if waiting_since is not None and registry.recovery.total:
            if waiting_since.tzinfo is None:
                waiting_since = waiting_since.replace(tzinfo=UTC)
            duration = max(0.0, (datetime.now(UTC) - waiting_since).total_seconds())
            self._metrics.failover_duration.observe(duration)
            log.info("partition_recovered", partition=self.index, sessions=registry.recovery.total, failover_s=duration)
        else:
            log.info("partition_recovered", partition=self.index, sessions=registry.recovery.total)
