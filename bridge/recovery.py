"""Boot-time recovery progress: which resumed sessions have been carried on, and when all of them have.

The daemon resumes every live session of the journal (``SessionRegistry.resume``). A session counts as
*recovered* once its actor has resumed it (same token, ``startNew:false``, history fetched and its backfill
published after ``session.resumed``) or ended it (Genesys answered that the session is over: expired, lost,
read-only, rejected, or the bridge gave up). ``/readyz`` turns true only when every session is recovered
(docs/recovery.md, docs/observability.md).

The registry owns the :class:`RecoveryProgress` of its ``resume`` and its actors report to it; the
composition root awaits ``SessionRegistry.recovered()``, turns readiness on, then calls
:meth:`RecoveryProgress.log_finished` (so the log line never precedes a true ``/readyz``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable

import structlog

__all__ = ["RecoveryProgress"]

log = structlog.get_logger(__name__)

#: A progress line at most this often (and one at the end), so 10,000 resumes do not flood the log.
PROGRESS_EVERY_S = 2.0


class RecoveryProgress:
    """The sessions still to recover, counted by result. Use from one loop only.

    Results: ``resumed``, ``ended:<reason>``, ``not_started`` (its actor could not even be built) and
    ``exited`` (its actor ended without a word, e.g. it crashed: never wait for it).
    """

    def __init__(self, session_ids: Iterable[str]) -> None:
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

    def settle(self, session_id: str, result: str) -> None:
        """``session_id`` is recovered with ``result``; only its first report counts."""
        if session_id not in self._pending:
            return
        self._pending.discard(session_id)
        self.results[result] += 1
        now = asyncio.get_running_loop().time()
        if not self._pending:
            self._done.set()
        elif now - self._last_progress >= PROGRESS_EVERY_S:
            self._last_progress = now
            log.info("recovery_progress", recovered=self.total - len(self._pending), pending=len(self._pending))
