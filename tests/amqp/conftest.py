"""Fixtures for the RabbitMQ tests: a real broker, per-test names, and small helpers around them.

Nothing here mocks aio-pika: the helpers are a second, plain client of the same broker (what an
integrating service would be), plus ``rabbitmqctl`` to break connections the way an operator or a
network fault would.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from bridge.amqp.connection import open_connection
from bridge.amqp.topology import declare_topology
from bridge.config import Settings
from bridge.observability.metrics import Metrics
from bridge.ports import Envelope
from genesys_bridge_client.contract import CommandOutcome
from tests.conftest import BrokerNames

#: Backstop for every wait on the broker. Tests await events; this only turns a hang into a failure.
WAIT_S = 15.0


def make_settings(names: BrokerNames, amqp_url: str, **overrides: Any) -> Settings:
    """Settings naming this test's exchanges and queues, with fast reconnects."""
    values: dict[str, Any] = {
        "amqp_url": amqp_url,
        "command_exchange": names.command_exchange,
        "intake_queue": names.intake_queue,
        "event_exchange": names.event_exchange,
        "dead_letter_queue": names.dead_letter_queue,
        "reconnect_initial_s": 0.01,
        "broker_reconnect_max_s": 0.2,
        "publish_timeout_s": 10.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(broker_names: BrokerNames, amqp_url: str) -> Settings:
    return make_settings(broker_names, amqp_url)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(process_metrics=False)


def sample(metrics: Metrics, name: str, labels: Mapping[str, str] | None = None) -> float:
    """A metric's current value (0 when never touched)."""
    value = metrics.registry.get_sample_value(name, dict(labels or {}))
    return 0.0 if value is None else value


def outcome(*, session_id: str = "s-1", command_id: str | None = None, **overrides: Any) -> CommandOutcome:
    """A delivered ``command.outcome`` event with fresh ids."""
    command_id = command_id or uuid.uuid4().hex
    values: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "session_id": session_id,
        "seq": 1,
        "occurred_at": datetime.now(UTC),
        "causation_id": command_id,
        "command_id": command_id,
        "command_type": "message.send",
        "status": "delivered",
        "reason": "ok",
    }
    values.update(overrides)
    return CommandOutcome(**values)


def command(session_id: str = "s-1", **overrides: Any) -> dict[str, Any]:
    """A valid ``message.send`` command as JSON data."""
    data: dict[str, Any] = {
        "type": "message.send",
        "command_id": uuid.uuid4().hex,
        "session_id": session_id,
        "text": "hello",
    }
    data.update(overrides)
    return data


class Inbox:
    """Messages consumed from one queue, awaited in arrival order."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.messages.put_nowait(message)

    async def take(self, count: int) -> list[AbstractIncomingMessage]:
        async with asyncio.timeout(WAIT_S):
            return [await self.messages.get() for _ in range(count)]


async def command_ids_until(inbox: Inbox, expected: Iterable[str]) -> list[str]:
    """Command ids consumed from ``inbox``, in arrival order, until every one of ``expected`` has come."""
    missing, seen = set(expected), list[str]()
    async with asyncio.timeout(WAIT_S):
        while missing:
            message = await inbox.messages.get()
            command_id = str(json.loads(message.body)["command_id"])
            seen.append(command_id)
            missing.discard(command_id)
    return seen


@dataclass
class Broker:
    """A plain client of the test broker: taps, raw publishes, cleanup, and connection killing."""

    settings: Settings
    connection: AbstractConnection
    channel: AbstractChannel
    queues: list[str] = field(default_factory=list)

    async def tap(self, binding: str = "#", *, exchange: str | None = None) -> Inbox:
        """Bind a fresh queue to the event exchange (or ``exchange``) and consume it (auto-ack)."""
        name = f"{self.settings.intake_queue}.tap{len(self.queues)}"
        queue = await self.channel.declare_queue(name, auto_delete=False)
        self.queues.append(name)
        await queue.bind(exchange or self.settings.event_exchange, routing_key=binding)
        return await self._consume(queue)

    async def reply_queue(self) -> tuple[str, Inbox]:
        """A queue to name in ``reply_to``, and its consumer."""
        name = f"{self.settings.intake_queue}.reply{len(self.queues)}"
        queue = await self.channel.declare_queue(name)
        self.queues.append(name)
        return name, await self._consume(queue)

    async def consume(self, name: str) -> Inbox:
        """Consume an existing queue (e.g. the DLQ), auto-ack."""
        return await self._consume(await self.channel.get_queue(name))

    async def take(self, name: str, count: int = 1) -> list[AbstractIncomingMessage]:
        """The first ``count`` messages of queue ``name``, unacked (ack, nack or reject them). Consumed, not
        fetched: the intake and partition queues (single active consumer) refuse ``basic.get``."""
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=count)
        queue = await channel.get_queue(name)
        inbox = Inbox()
        tag = await queue.consume(inbox.on_message, no_ack=False)
        taken = await inbox.take(count)
        await queue.cancel(tag)
        return taken

    async def _consume(self, queue: AbstractQueue) -> Inbox:
        inbox = Inbox()
        await queue.consume(inbox.on_message, no_ack=True)
        return inbox

    async def send_command(
        self,
        body: bytes | Mapping[str, Any],
        *,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Publish a command to the command exchange (routing key = its type), confirmed."""
        if isinstance(body, bytes):
            raw, routing_key = body, "unknown"
        else:
            raw, routing_key = json.dumps(body).encode(), str(body.get("type", "unknown"))
        exchange = await self.channel.get_exchange(self.settings.command_exchange)
        await exchange.publish(
            aio_pika.Message(
                raw,
                content_type="application/json",
                reply_to=reply_to,
                correlation_id=correlation_id,
                headers={"x-test": "yes", **(headers or {})},
            ),
            routing_key=routing_key,
        )

    async def consumer_count(self, queue: str) -> int:
        declared = await self.channel.declare_queue(queue, passive=True)
        return declared.declaration_result.consumer_count or 0

    async def cleanup(self) -> None:
        channel = await self.connection.channel()
        for name in [*self.queues, self.settings.intake_queue, self.settings.dead_letter_queue]:
            await channel.queue_delete(name)
        for name in (self.settings.command_exchange, self.settings.event_exchange):
            await channel.exchange_delete(name)


@pytest.fixture
async def broker(settings: Settings) -> AsyncIterator[Broker]:
    """The test's topology, declared, and a client to look at it; everything is deleted afterwards."""
    connection = await open_connection(settings, name=f"{settings.intake_queue}.helper")
    channel = await connection.channel()
    await declare_topology(channel, settings)
    helper = Broker(settings, connection, channel)
    try:
        yield helper
    finally:
        await helper.cleanup()
        await connection.close()


async def kill_connection(name: str) -> None:
    """Close the broker connection named ``name`` from the broker side, as an operator would."""
    # One line per connection: "<rabbit@host.N.M.0>\t[{...},{"connection_name","<name>"},...]".
    listing = await _rabbitmqctl("list_connections", "--no-table-headers", "pid", "client_properties")
    marker = '{"connection_name","' + name + '"}'
    pids = [line.split("\t", 1)[0] for line in listing.splitlines() if marker in line]
    assert pids, f"no broker connection named {name!r}"
    for pid in pids:
        await _rabbitmqctl("close_connection", pid, "killed by test")


async def _rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


class RecordingHandler:
    """A CommandHandler that records envelopes and, unless told otherwise, acks them at once."""

    def __init__(self, *, auto_ack: bool = True) -> None:
        self.auto_ack = auto_ack
        self.envelopes: asyncio.Queue[Envelope] = asyncio.Queue()
        self.seen: list[Envelope] = []

    async def submit(self, envelope: Envelope) -> None:
        self.seen.append(envelope)
        self.envelopes.put_nowait(envelope)
        if self.auto_ack:
            await envelope.delivery.ack()

    async def take(self, count: int) -> list[Envelope]:
        async with asyncio.timeout(WAIT_S):
            return [await self.envelopes.get() for _ in range(count)]


class GatedConnect:
    """Our ``Connect`` seam with a gate: while closed, (re)connect attempts wait (the broker is "away")."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()

    async def __call__(self, settings: Settings, *, name: str) -> AbstractConnection:
        if not self.gate.is_set():
            self.waiting.set()
            await self.gate.wait()
        return await open_connection(settings, name=name)


class CutOffConnect:
    """Our ``Connect`` seam: the first ``cut`` connections it opens lose their AMQP link before they are
    handed over, their owner not yet told. That is the broker dropping a connection between a caller's
    check that it is open and its next request, a window of one loop turn that a busy process hits."""

    def __init__(self, cut: int = 1) -> None:
        self.cut = cut
        self.attempts = 0

    async def __call__(self, settings: Settings, *, name: str) -> AbstractConnection:
        self.attempts += 1
        connection = await open_connection(settings, name=name)
        if self.cut > 0:
            self.cut -= 1
            await cut_off(connection)
        return connection


async def cut_off(connection: AbstractConnection) -> None:
    """Close ``connection``'s AMQP link under it, as a broker that drops it would, and return once its
    close callbacks ran: one its owner adds after this never runs."""
    assert connection.transport is not None
    told = asyncio.Event()
    connection.close_callbacks.add(lambda *_: told.set())
    await connection.transport.connection.close(ConnectionResetError("cut off by the test"))
    await told.wait()


class HandshakeThatIgnoresCancel:
    """A ``Connect`` that completes the handshake even when its task is cancelled meanwhile.

    aiormq applies a connect deadline with ``asyncio.wait_for``, which on Python 3.11 drops a
    cancellation that lands as the handshake completes. A component must stop all the same.
    """

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.cancel_ignored = asyncio.Event()
        self.release = asyncio.Event()
        self.connections: list[AbstractConnection] = []

    async def __call__(self, settings: Settings, *, name: str) -> AbstractConnection:
        connection = await open_connection(settings, name=name)
        self.connections.append(connection)
        self.connected.set()
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                self.cancel_ignored.set()
        return connection
