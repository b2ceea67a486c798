"""Test-side client of the bridge: publish commands, collect events, await conditions (never sleep)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from bridge.amqp.tools import CommandPublisher, follow_events
from bridge.contract.codec import decode_event
from bridge.contract.events import CommandOutcome, Event, MessageReceived, SessionEnded

__all__ = ["EventCollector", "Integrator", "integrator"]

#: Backstop for awaited conditions; the per-test timeout is the real limit.
WAIT_S = 30.0


class EventCollector:
    """Every event published on one exchange, in arrival order, with awaitable conditions."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.raw: list[tuple[str, dict[str, Any], bytes]] = []  # routing key, properties, body
        self._changed = asyncio.Condition()

    async def add(self, event: Event, routing_key: str, properties: dict[str, Any], body: bytes) -> None:
        async with self._changed:
            self.events.append(event)
            self.raw.append((routing_key, properties, body))
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[list[Event]], bool]) -> list[Event]:
        """Wait until ``predicate(events)`` holds; returns the events seen so far."""
        async with asyncio.timeout(WAIT_S), self._changed:
            await self._changed.wait_for(lambda: predicate(self.events))
            return list(self.events)

    def of(self, session_id: str, type_: str | None = None) -> list[Event]:
        return [e for e in self.events if e.session_id == session_id and (type_ is None or e.type == type_)]

    def outcomes(self, command_id: str) -> list[CommandOutcome]:
        return [e for e in self.events if isinstance(e, CommandOutcome) and e.command_id == command_id]

    async def outcome(self, command_id: str) -> CommandOutcome:
        """The settled outcome of a command (``will_retry`` outcomes are skipped)."""
        await self.wait_for(lambda _: any(o.status != "will_retry" for o in self.outcomes(command_id)))
        return next(o for o in self.outcomes(command_id) if o.status != "will_retry")

    def messages(self, session_id: str, direction: str = "outbound") -> list[MessageReceived]:
        return [e for e in self.of(session_id) if isinstance(e, MessageReceived) and e.direction == direction]

    async def ended(self, session_id: str) -> SessionEnded:
        await self.wait_for(lambda _: bool(self.of(session_id, "session.ended")))
        event = self.of(session_id, "session.ended")[0]
        assert isinstance(event, SessionEnded)
        return event


class Integrator:
    """What a backend service does: publish commands, read events."""

    def __init__(self, publisher: CommandPublisher, collector: EventCollector) -> None:
        self.publisher = publisher
        self.events = collector

    async def send(self, command: dict[str, Any] | bytes, *, reply_to: str | None = None) -> str:
        if isinstance(command, dict):
            command = {"command_id": uuid.uuid4().hex, **command}
        return await self.publisher.send(command, reply_to=reply_to)

    async def start(self, session_id: str, *, deployment_id: str = "dep-1", **extra: Any) -> str:
        return await self.send(
            {
                "type": "session.start",
                "session_id": session_id,
                "deployment_id": deployment_id,
                "region": "mypurecloud.com",
                **extra,
            }
        )

    async def say(self, session_id: str, text: str, **extra: Any) -> str:
        return await self.send({"type": "message.send", "session_id": session_id, "text": text, **extra})


@contextlib.asynccontextmanager
async def integrator(amqp_url: str, *, command_exchange: str, event_exchange: str) -> AsyncIterator[Integrator]:
    """Publish to ``command_exchange`` and collect everything from ``event_exchange`` until exit."""
    collector = EventCollector()
    async with follow_events(amqp_url, exchange=event_exchange) as queue:

        async def pump() -> None:
            async with queue.iterator() as messages:
                async for message in messages:
                    async with message.process():
                        props = {
                            "message_id": message.message_id,
                            "correlation_id": message.correlation_id,
                            "type": message.type,
                            "content_type": message.content_type,
                            "delivery_mode": message.delivery_mode,
                            "timestamp": message.timestamp,
                        }
                        await collector.add(decode_event(message.body), message.routing_key or "", props, message.body)

        async with CommandPublisher(amqp_url, exchange=command_exchange) as publisher, asyncio.TaskGroup() as tg:
            task = tg.create_task(pump())
            try:
                yield Integrator(publisher, collector)
            finally:
                task.cancel()
