"""The seams between the bridge's parts. Real implementations are wired only in ``bridge.app``;
tests pass small fakes of these protocols (never mocks of aio-pika or websockets)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from bridge.contract import Command, Event
from bridge.record import SessionRecord

__all__ = [
    "Clock",
    "CommandHandler",
    "Connector",
    "Delivery",
    "Envelope",
    "EventSink",
    "GenesysConnection",
    "LoopClock",
    "SessionStore",
    "event_routing_key",
]


class Clock(Protocol):
    """Time as the bridge sees it. ``monotonic`` must follow the event loop so virtual time works."""

    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...


class LoopClock:
    """The real clock: the running loop's ``time()`` and the wall clock in UTC."""

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def now(self) -> datetime:
        return datetime.now(UTC)


def event_routing_key(event_type: str, deployment_id: str | None) -> str:
    """Routing key of an event on the event exchange: ``<event type>.<deployment id>``.

    ``deployment_id`` is ``"unknown"`` for outcomes of commands that name no known session.
    Consumers bind e.g. ``message.received.#`` or ``#.<deployment id>``.
    """
    return f"{event_type}.{deployment_id or 'unknown'}"


class EventSink(Protocol):
    """Publishes events. ``publish`` returns only once the broker confirmed the event.

    Callers must treat a raised ``BrokerError`` via ``bridge.errors.is_retryable``. Implementations
    buffer while the broker is away and apply back-pressure (``publish`` waits) when the buffer is full.
    """

    async def publish(self, event: Event, *, deployment_id: str | None, reply_to: str | None = None) -> None: ...


class Delivery(Protocol):
    """Settles one command delivery with the broker. Call exactly one method, exactly once."""

    async def ack(self) -> None:
        """The command's outcome is published and confirmed: remove the command from the queue."""
        ...

    async def dead_letter(self, reason: str, detail: str) -> None:
        """Put the original command on the dead-letter queue with the reason in headers, then ack it."""
        ...

    async def requeue(self) -> None:
        """Give the command back to the broker (shutdown before it was started)."""
        ...


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded command on its way to a session, with the means to settle it."""

    command: Command
    delivery: Delivery
    reply_to: str | None = None
    received_at: float = 0.0  # Clock.monotonic() at intake; bounds the age of inbox entries
    redelivered: bool = field(default=False)


class CommandHandler(Protocol):
    """Takes decoded commands from the intake, one at a time, in delivery order.

    ``submit`` may wait (back-pressure) but should return quickly: the intake hands over the next
    command only after it returns. From then on the handler owns ``envelope.delivery`` and must
    settle it exactly once.
    """

    async def submit(self, envelope: Envelope) -> None: ...


class GenesysConnection(Protocol):
    """One open Guest API WebSocket. Text frames only (protocol reference §3)."""

    async def send(self, frame: str) -> None:
        """Send one JSON text frame. Raises ``GenesysUnavailable`` if the socket is gone."""
        ...

    def frames(self) -> AsyncIterator[str]:
        """Yield received text frames until the socket closes.

        Ends normally on a clean close by us; raises ``GenesysUnavailable`` on any other close.
        """
        ...

    async def close(self) -> None:
        """Close with 1000 without ending the Genesys session (protocol reference §4.9)."""
        ...


class Connector(Protocol):
    """Opens Guest API WebSockets."""

    async def connect(self, url: str, *, origin: str | None) -> GenesysConnection:
        """Open ``url``; raises ``GenesysUnavailable`` (retryable) or ``GenesysRejected`` (e.g. 403 upgrade)."""
        ...


class SessionStore(Protocol):
    """Durable session records (docs/durability.md). ``save`` returns once the record is durable."""

    async def save(self, record: SessionRecord) -> None:
        """Persist the newest snapshot of a session (a closed one too: ``record.closed``)."""
        ...

    async def load_live(self) -> list[SessionRecord]:
        """Every session whose newest record is not closed. Unreadable records are skipped and counted."""
        ...
