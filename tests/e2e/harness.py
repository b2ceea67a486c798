"""Test-side client of the bridge: publish commands, collect events, await conditions (never sleep).

Everything here is what an integrating service does with a plain aio-pika client: publish commands to
the command exchange, bind a private queue to the event exchange, read a ``reply_to`` queue and the
dead-letter queue. Nothing reaches into the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from bridge.amqp.tools import CommandPublisher, follow_events
from genesys_bridge_client.contract.codec import decode_event
from genesys_bridge_client.contract.events import CommandOutcome, Event, MessageReceived, SessionEnded

__all__ = [
    "DeadLetter",
    "DeadLetters",
    "EventCollector",
    "Integrator",
    "dead_letters",
    "integrator",
    "kill_connection",
    "ready_count",
]

#: Backstop for awaited conditions; the per-test timeout is the real limit.
WAIT_S = 30.0


class EventCollector:
    """Every event published on one exchange (or one queue), in arrival order, with awaitable conditions."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.raw: list[tuple[str, dict[str, Any], bytes]] = []  # routing key, properties, body
        self._changed = asyncio.Condition()

    async def add(self, event: Event, routing_key: str, properties: dict[str, Any], body: bytes) -> None:
        async with self._changed:
            self.events.append(event)
            self.raw.append((routing_key, properties, body))
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[list[Event]], bool], *, timeout_s: float = WAIT_S) -> list[Event]:
        """Wait until ``predicate(events)`` holds; returns the events seen so far."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: predicate(self.events))
            return list(self.events)

    def of(self, session_id: str, type_: str | None = None) -> list[Event]:
        return [e for e in self.events if e.session_id == session_id and (type_ is None or e.type == type_)]

    def outcomes(self, command_id: str) -> list[CommandOutcome]:
        return [e for e in self.events if isinstance(e, CommandOutcome) and e.command_id == command_id]

    def settled(self, command_id: str) -> list[CommandOutcome]:
        """The settled outcomes (not ``will_retry``) of a command: exactly one unless it was repeated."""
        return [o for o in self.outcomes(command_id) if o.status != "will_retry"]

    async def outcome(self, command_id: str, *, timeout_s: float = WAIT_S) -> CommandOutcome:
        """The settled outcome of a command (``will_retry`` outcomes are skipped)."""
        await self.wait_for(lambda _: bool(self.settled(command_id)), timeout_s=timeout_s)
        return self.settled(command_id)[0]

    async def wait_each(
        self, wanted: Iterable[str], key: Callable[[Event], str | None], *, since: int = 0, timeout_s: float = WAIT_S
    ) -> None:
        """Wait until, for each of ``wanted``, an event arrived (from the ``since``-th on) whose ``key`` is it.

        Each event is looked at once. A condition that scanned every event for each of hundreds of sessions
        after every event would cost time quadratic in the events, in the process that also runs the
        simulator: on a slow machine it starved the simulator, and the bridge behind it.
        """
        pending = set(wanted)
        cursor = since

        def done(events: list[Event]) -> bool:
            nonlocal cursor
            for event in events[cursor:]:
                found = key(event)
                if found is not None:
                    pending.discard(found)
            cursor = len(events)
            return not pending

        await self.wait_for(done, timeout_s=timeout_s)

    async def wait_every_session(
        self, session_ids: Iterable[str], type_: str, *, since: int = 0, timeout_s: float = WAIT_S
    ) -> None:
        """Wait until each of ``session_ids`` has an event of ``type_`` (``session.started``, ...), counting
        from the ``since``-th event (``len(events)`` at some earlier point) on."""
        await self.wait_each(
            session_ids, lambda e: e.session_id if e.type == type_ else None, since=since, timeout_s=timeout_s
        )

    async def all_settled(self, command_ids: list[str], *, timeout_s: float = WAIT_S) -> list[CommandOutcome]:
        """Wait until every command has a settled outcome; returns the first of each, in order."""
        await self.wait_each(
            command_ids,
            lambda e: e.command_id if isinstance(e, CommandOutcome) and e.status != "will_retry" else None,
            timeout_s=timeout_s,
        )
        first: dict[str, CommandOutcome] = {}
        for event in self.events:
            if isinstance(event, CommandOutcome) and event.status != "will_retry" and event.command_id:
                first.setdefault(event.command_id, event)
        return [first[c] for c in command_ids]

    def messages(self, session_id: str, direction: str = "outbound") -> list[MessageReceived]:
        return [e for e in self.of(session_id) if isinstance(e, MessageReceived) and e.direction == direction]

    async def ended(self, session_id: str) -> SessionEnded:
        await self.wait_for(lambda _: bool(self.of(session_id, "session.ended")))
        event = self.of(session_id, "session.ended")[0]
        assert isinstance(event, SessionEnded)
        return event


def _properties(message: AbstractIncomingMessage) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "correlation_id": message.correlation_id,
        "type": message.type,
        "content_type": message.content_type,
        "delivery_mode": message.delivery_mode,
        "timestamp": message.timestamp,
        "app_id": message.app_id,
    }


class Integrator:
    """What a backend service does: publish commands, read events (and its ``reply_to`` queue)."""

    def __init__(self, publisher: CommandPublisher, collector: EventCollector, replies: EventCollector, reply_to: str):
        self.publisher = publisher
        self.events = collector
        self.replies = replies
        self.reply_to = reply_to

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

    async def started(self, session_id: str, **extra: Any) -> CommandOutcome:
        """Start a session and wait for its settled outcome (which must be ``delivered``)."""
        outcome = await self.events.outcome(await self.start(session_id, **extra))
        assert outcome.status == "delivered", outcome
        return outcome

    async def say(self, session_id: str, text: str, **extra: Any) -> str:
        return await self.send({"type": "message.send", "session_id": session_id, "text": text, **extra})


@contextlib.asynccontextmanager
async def integrator(amqp_url: str, *, command_exchange: str, event_exchange: str) -> AsyncIterator[Integrator]:
    """Publish to ``command_exchange`` and collect everything from ``event_exchange`` until exit.

    Also declares a private ``reply_to`` queue (:attr:`Integrator.reply_to`) collected into
    :attr:`Integrator.replies`.
    """
    collector = EventCollector()
    replies = EventCollector()
    async with follow_events(amqp_url, exchange=event_exchange) as queue:
        reply_queue = await queue.channel.declare_queue(exclusive=True, auto_delete=True)

        async def pump(source: aio_pika.abc.AbstractQueue, into: EventCollector) -> None:
            async with source.iterator() as messages:
                async for message in messages:
                    async with message.process():
                        event = decode_event(message.body)
                        await into.add(event, message.routing_key or "", _properties(message), message.body)

        async with CommandPublisher(amqp_url, exchange=command_exchange) as publisher, asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(pump(queue, collector)), tg.create_task(pump(reply_queue, replies))]
            try:
                yield Integrator(publisher, collector, replies, reply_queue.name)
            finally:
                for task in tasks:
                    task.cancel()


@dataclass(frozen=True)
class DeadLetter:
    """One message found in the dead-letter queue."""

    body: bytes
    headers: dict[str, Any]
    reply_to: str | None


class DeadLetters:
    """The DLQ's messages in arrival order, with an awaitable count."""

    def __init__(self) -> None:
        self.items: list[DeadLetter] = []
        self._changed = asyncio.Condition()

    async def add(self, message: AbstractIncomingMessage) -> None:
        async with self._changed:
            self.items.append(DeadLetter(message.body, dict(message.headers or {}), message.reply_to))
            self._changed.notify_all()

    async def wait(self, count: int, *, timeout_s: float = WAIT_S) -> list[DeadLetter]:
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: len(self.items) >= count)
            return list(self.items)


@contextlib.asynccontextmanager
async def dead_letters(amqp_url: str, queue: str) -> AsyncIterator[DeadLetters]:
    """Consume (and remove) everything the bridge dead-letters into ``queue`` (it must exist)."""
    found = DeadLetters()
    connection = await aio_pika.connect(amqp_url, client_properties={"connection_name": "e2e-dlq-reader"})
    try:
        channel = await connection.channel()
        declared = await channel.get_queue(queue, ensure=True)
        await declared.consume(found.add, no_ack=True)
        yield found
    finally:
        await connection.close()


async def ready_count(amqp_url: str, queue: str) -> int:
    """Messages ready (not unacked) in ``queue``, from a passive declare."""
    connection = await aio_pika.connect(amqp_url, client_properties={"connection_name": "e2e-queue-probe"})
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def kill_connection(name: str, *, prefix: bool = False) -> int:
    """Close every broker connection named ``name`` (or, with ``prefix``, whose name starts with it) from
    the broker side, as an operator would.

    Returns how many were closed. The name is matched in the ``connection_name`` client property.
    """
    # One line per connection: "<rabbit@host.N.M.0>\t[{...},{"connection_name","<name>"},...]".
    listing = await _rabbitmqctl("list_connections", "--no-table-headers", "pid", "client_properties")
    marker = '{"connection_name","' + name + ("" if prefix else '"}')
    pids = [line.split("\t", 1)[0] for line in listing.splitlines() if marker in line]
    for pid in pids:
        await _rabbitmqctl("close_connection", pid, "killed by e2e test")
    return len(pids)


async def _rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()
