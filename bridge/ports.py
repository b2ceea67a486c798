"""The seams between the bridge's parts. Real implementations are wired only in ``bridge.app``;
tests pass small fakes of these protocols (never mocks of aio-pika or websockets)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from bridge.record import SessionRecord
from genesys_bridge_client.contract import Command, Event

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
    "TraceContext",
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


def event_routing_key(event_type: str, deployment_id: str | None, route: str | None = None) -> str:
    """Routing key of an event on the event exchange: ``<event type>.<deployment id>[.<route>]``.

    ``deployment_id`` is ``"unknown"`` for outcomes of commands that name no known session. ``route`` is the
    owner token a ``session.start`` gave its session, so each service binds only its own conversations.
    Consumers bind e.g. ``message.received.#``, ``#.<deployment id>`` or ``#.<route>``.
    """
    key = f"{event_type}.{deployment_id or 'unknown'}"
    return f"{key}.{route}" if route else key


#: W3C Trace Context ``traceparent``: version, trace id, parent id, flags (lower-case hex, none all zeros).
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
#: The W3C limit on ``tracestate``: longer values may be dropped, and we do.
MAX_TRACESTATE_CHARS = 512


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The W3C trace context of a command (its ``traceparent`` and ``tracestate`` AMQP headers).

    The bridge copies it onto every event the command causes and onto the session's later events, so one
    conversation can be followed across services.
    """

    traceparent: str
    tracestate: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, object] | None) -> TraceContext | None:
        """The trace context in ``headers``, or None when there is none or ``traceparent`` is malformed
        (a malformed context is dropped, as W3C asks, never an error: tracing must not refuse a command)."""
        if not headers:
            return None
        parent = _header_text(headers.get("traceparent"))
        if parent is None or not _TRACEPARENT.match(parent.strip()):
            return None
        state = _header_text(headers.get("tracestate"))
        if state is not None and (len(state) > MAX_TRACESTATE_CHARS or not state.strip()):
            state = None
        return cls(parent.strip(), state)

    def headers(self) -> dict[str, str]:
        """The AMQP headers that carry this context."""
        if self.tracestate is None:
            return {"traceparent": self.traceparent}
        return {"traceparent": self.traceparent, "tracestate": self.tracestate}


def _header_text(value: object) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


class EventSink(Protocol):
    """Publishes events. ``publish`` returns only once the broker confirmed the event.

    Callers must treat a raised ``BrokerError`` via ``bridge.errors.is_retryable``. Implementations
    buffer while the broker is away and apply back-pressure (``publish`` waits) when the buffer is full.
    """

    async def publish(
        self,
        event: Event,
        *,
        deployment_id: str | None,
        route: str | None = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        trace: TraceContext | None = None,
    ) -> None:
        """Publish ``event`` routed by ``deployment_id`` and ``route`` (:func:`event_routing_key`), and a copy
        to the ``reply_to`` queue when given; ``correlation_id`` (the requester's AMQP property) and ``trace``
        go on the message's properties and headers."""
        ...


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
    correlation_id: str | None = None  # the AMQP property: copied onto the command's outcome (request/reply)
    trace: TraceContext | None = None
    received_at: float = 0.0  # Clock.monotonic() at intake; bounds the age of inbox entries
    redelivered: bool = field(default=False)


class CommandHandler(Protocol):
    """Takes decoded commands from the intake, one at a time, in delivery order.

    ``submit`` may wait (back-pressure) but should return quickly: the intake hands over the next
    command only after it returns. From then on the handler owns ``envelope.delivery`` and must
    settle it exactly once, or, where a requeue of it alone would let later commands overtake it, break
    its link (``AmqpDelivery.break_link``). ``submit`` reports nothing by raising: an exception is a bug,
    logged, and the command requeued.
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

    async def ping(self, timeout_s: float | None) -> None:
        """Send a WebSocket ping and wait up to ``timeout_s`` for its pong (``None``: send it, do not wait).

        Raises ``TimeoutError`` when the pong did not come in time, ``GenesysUnavailable`` if the socket is gone.
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
