"""Boot-time recovery progress: which resumed sessions have been carried on, and when all of them have.

The daemon resumes every live session of the journal (``SessionRegistry.resume``). A session counts as
*recovered* once its actor has published ``session.resumed`` (same token, ``startNew:false``, history
fetched; its backfill follows at once on the same actor) or ``session.ended`` (Genesys answered that the
session is over: expired, lost, read-only, rejected, or the bridge gave up). ``/readyz`` turns true only
when every session is recovered (docs/recovery.md, docs/observability.md).

:class:`RecoveryWatch` sees this without reaching into the session actors: it wraps the
:class:`~bridge.ports.EventSink` the registry publishes through and notes each recovering session's first
``session.resumed`` or ``session.ended`` *after* the broker confirmed it.

The caller (the composition root) must: build the watch with the ids of the sessions it is about to
resume, hand it to the registry as its sink, call :meth:`RecoveryWatch.resume_returned` once
``SessionRegistry.resume`` returned (sessions it could not even spawn are then counted as failed), await
:meth:`RecoveryWatch.finished`, turn readiness on, then call :meth:`RecoveryWatch.log_finished` (so the
log line never precedes a true ``/readyz``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable

import structlog

from bridge.contract import Event
from bridge.contract.events import SessionEnded, SessionResumed
from bridge.ports import EventSink

__all__ = ["RecoveryWatch"]

log = structlog.get_logger(__name__)

#: A progress line at most this often (and one at the end), so 10,000 resumes do not flood the log.
PROGRESS_EVERY_S = 2.0


class RecoveryWatch:
    """An :class:`EventSink` decorator that tracks the recovery of ``session_ids``. Use from one loop only."""

    def __init__(self, sink: EventSink, session_ids: Iterable[str]) -> None:
        self._sink = sink
        self._pending = set(session_ids)
        self.total = len(self._pending)
        self.results: Counter[str] = Counter()
        self._started = asyncio.get_running_loop().time()  # the loop's clock: virtual in tests
        self._last_progress = self._started
        self._done = asyncio.Event()
        if not self._pending:
            self._done.set()

    @property
    def pending(self) -> int:
        """Sessions not yet resumed nor ended."""
        return len(self._pending)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def finished(self) -> None:
        """Return once every session is recovered (resumed or ended)."""
        await self._done.wait()

    def log_finished(self) -> None:
        """Log ``recovery_finished`` (sessions, results, duration_s); the caller does once ``/readyz`` is true."""
        log.info(
            "recovery_finished",
            sessions=self.total,
            results=dict(self.results),
            duration_s=round(asyncio.get_running_loop().time() - self._started, 3),
        )

    async def publish(self, event: Event, *, deployment_id: str | None, reply_to: str | None = None) -> None:
        """Publish through the wrapped sink; then, if ``event`` settles a recovering session, count it."""
        await self._sink.publish(event, deployment_id=deployment_id, reply_to=reply_to)
        if self._pending and event.session_id in self._pending:
            match event:
                case SessionResumed():
                    self._settle(event.session_id, "resumed")
                case SessionEnded(reason=reason):
                    self._settle(event.session_id, f"ended:{reason}")
                case _:
                    pass

    def actor_exited(self, session_id: str) -> None:
        """A session's actor is gone; if it never reported resumed/ended (it crashed), stop waiting for it,
        so ``/readyz`` cannot hang on a session that will never answer."""
        if session_id in self._pending:
            self._settle(session_id, "exited")

    def resume_returned(self, is_live: Callable[[str], bool]) -> None:
        """``SessionRegistry.resume`` returned: a pending session without a live actor never started."""
        for session_id in [sid for sid in self._pending if not is_live(sid)]:
            self._settle(session_id, "not_started")

    def _settle(self, session_id: str, result: str) -> None:
        self._pending.discard(session_id)
        self.results[result] += 1
        now = asyncio.get_running_loop().time()
        if not self._pending:
            self._done.set()
        elif now - self._last_progress >= PROGRESS_EVERY_S:
            self._last_progress = now
            log.info("recovery_progress", recovered=self.total - len(self._pending), pending=len(self._pending))
