"""One session's events: how they are built and how they are published.

Every event carries a fresh ``event_id``, the per-session ``seq``, ``occurred_at`` and the causing
command's ids (docs/contract.md; built by :mod:`bridge.contract.outcomes`, the one place outcomes are
built). :class:`SessionEvents` stamps and publishes one session's events; ``publish`` returns once the
broker confirmed the event.

A broker blip never ends a Genesys session: a retryable publish error (decided by ``is_retryable``) is
retried with the *same* event, without a limit, on the injected backoff, until it is confirmed or the
session's task is cancelled (the drain deadline). The publisher itself buffers while the broker is away.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import structlog

from bridge.contract import Command, Event
from bridge.contract.events import CommandOutcome
from bridge.contract.outcomes import event_stamp
from bridge.errors import BrokerError, is_retryable
from bridge.ports import Clock, EventSink
from bridge.record import SettledOutcome
from bridge.session.keeper import RecordKeeper
from bridge.session.ports import Backoff

__all__ = ["SessionEvents"]

log = structlog.get_logger(__name__)


class SessionEvents:
    """Event factory and publisher for one session. Use from the session's own tasks only."""

    def __init__(self, *, keeper: RecordKeeper, sink: EventSink, clock: Clock, backoff: Backoff) -> None:
        self._keeper = keeper
        self._sink = sink
        self._clock = clock
        self._backoff = backoff

    async def stamp(self, cause: Command | None = None) -> dict[str, Any]:
        """The common fields of a new event; takes the next ``seq``."""
        seq = await self._keeper.next_seq()
        return event_stamp(session_id=self._keeper.session_id, seq=seq, occurred_at=self._clock.now(), cause=cause)

    async def outcome(self, result: SettledOutcome, cause: Command) -> CommandOutcome:
        """Build (not publish) ``result`` as the ``command.outcome`` of ``cause``, numbered in this session;
        settle it through the OutcomeBook."""
        return result.event(await self.stamp(cause))

    async def publish(self, event: Event, *, reply_to: str | None = None) -> None:
        """Publish ``event`` routed by this session's deployment; waits for the broker's confirm.

        A retryable broker error (no confirm in time, broker away) is retried with the *same* event (same
        ``event_id``, so a duplicate is recognisable) for as long as it takes, waiting the injected backoff
        between tries; cancelling the caller's task is the only way out. A final broker error is raised.
        """
        delays: Iterator[float] | None = None
        attempt = 0
        while True:
            try:
                await self._sink.publish(event, deployment_id=self._keeper.record.deployment_id, reply_to=reply_to)
            except BrokerError as exc:
                if not is_retryable(exc):
                    raise
                attempt += 1
                delays = delays or self._backoff()
                delay = next(delays)
                log.warning(
                    "event_publish_retry", event_type=event.type, attempt=attempt, delay_s=delay, error=str(exc)
                )
                await asyncio.sleep(delay)
            else:
                return
