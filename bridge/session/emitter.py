"""Stamps and publishes one session's events: ``event_id``, per-session ``seq``, ``occurred_at`` and the
causing command's ids (docs/contract.md). ``publish`` returns once the broker confirmed the event.

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
from bridge.contract.content import AttachmentPart
from bridge.contract.events import CommandOutcome, OutcomeReason, OutcomeStatus
from bridge.errors import BrokerError, is_retryable
from bridge.ports import Clock, EventSink
from bridge.session.keeper import RecordKeeper
from bridge.session.ports import Backoff
from bridge.session.stamps import event_stamp, outcome_of

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

    async def outcome(
        self,
        command: Command,
        status: OutcomeStatus,
        reason: OutcomeReason,
        detail: str = "",
        *,
        genesys_message_id: str | None = None,
        genesys_code: int | None = None,
        attachment: AttachmentPart | None = None,
    ) -> CommandOutcome:
        """Build (not publish) the outcome of ``command``; settle it through the OutcomeBook."""
        stamp = await self.stamp(command)
        return outcome_of(
            command,
            stamp,
            status,
            reason,
            detail,
            genesys_message_id=genesys_message_id,
            genesys_code=genesys_code,
            attachment=attachment,
        )

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
