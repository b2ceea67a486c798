"""Small client-side helpers for the shell and the demo: publish a command, follow events, declare ahead.

These are what an integrating service does, written with aio-pika and the contract only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from bridge.amqp.connection import broker_error, close_quietly, open_connection
from bridge.amqp.journal import open_stream_journal
from bridge.amqp.topology import declare_topology
from bridge.config import Settings

__all__ = ["CommandPublisher", "declare_ahead", "delete_names", "follow_events"]


class CommandPublisher:
    """Publishes commands to the command exchange with confirms. Use as an async context manager."""

    def __init__(self, amqp_url: str, *, exchange: str) -> None:
        self._url = amqp_url
        self._exchange_name = exchange
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def __aenter__(self) -> CommandPublisher:
        self._connection = await aio_pika.connect(self._url, client_properties={"connection_name": "bridge-cli-send"})
        channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await channel.declare_exchange(self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def send(
        self, command: Mapping[str, Any] | bytes, *, reply_to: str | None = None, correlation_id: str | None = None
    ) -> str:
        """Publish one command (a dict is JSON-encoded; ``command_id`` is filled in when missing).

        Returns the command id ("" for raw bytes). The routing key is the command type, as the contract asks.
        ``correlation_id`` becomes the AMQP property the bridge copies onto the outcome it sends to ``reply_to``.
        """
        if isinstance(command, bytes):
            body, routing_key, command_id = command, "unknown", ""
        else:
            data = dict(command)
            data.setdefault("command_id", uuid.uuid4().hex)
            body = json.dumps(data).encode()
            routing_key = str(data.get("type", "unknown"))
            command_id = str(data["command_id"])
        assert self._exchange is not None, "use CommandPublisher as an async context manager"
        await self._exchange.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=command_id or None,
                reply_to=reply_to,
                correlation_id=correlation_id,
            ),
            routing_key=routing_key,
        )
        return command_id

    async def request(self, command: Mapping[str, Any] | bytes, *, timeout_s: float) -> tuple[str, bytes | None]:
        """Publish one command as a request and wait up to ``timeout_s`` for its settled ``command.outcome``.

        The command carries a private reply queue (``reply_to``) and the AMQP ``correlation_id`` = its
        ``command_id`` (for raw bytes: the ``command_id`` in them when they are a JSON object with one, else a
        fresh id), which the bridge copies onto the outcome. Returns ``(correlation id, outcome body)``, the body
        ``None`` when nothing came in time. The caller decodes the body
        (``genesys_bridge_client.contract.codec.decode_event``).
        """
        assert self._connection is not None, "use CommandPublisher as an async context manager"
        correlation_id = _request_id(command)
        if not isinstance(command, bytes):
            command = {**command, "command_id": correlation_id}
        channel = await self._connection.channel()
        try:
            # Exclusive and server-named: only this process reads it, and it vanishes with the connection.
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

            async def on_reply(message: AbstractIncomingMessage) -> None:
                # Anything else on the queue (a stray publish) is not this request's answer, and a will_retry
                # notice (a raw command may ask for them with reply_notices) is not a settled one.
                if message.correlation_id == correlation_id and not answered.done() and not _notice(message.body):
                    answered.set_result(message.body)

            # Consume before publishing, so the reply cannot arrive before anyone listens.
            await queue.consume(on_reply, no_ack=True)
            await self.send(command, reply_to=queue.name, correlation_id=correlation_id)
            try:
                async with asyncio.timeout(timeout_s):
                    return correlation_id, await answered
            except TimeoutError:
                return correlation_id, None
        finally:
            await channel.close()


def _request_id(command: Mapping[str, Any] | bytes) -> str:
    """The id a request is correlated by: its ``command_id`` when it has one, else a fresh one."""
    data: object = command
    if isinstance(command, bytes):
        try:
            data = json.loads(command)
        except ValueError:
            data = None
    found = data.get("command_id") if isinstance(data, Mapping) else None
    return found if isinstance(found, str) and found else uuid.uuid4().hex


def _notice(body: bytes) -> bool:
    """Whether an outcome body is a non-final ``will_retry`` notice."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("status") == "will_retry"


@asynccontextmanager
async def follow_events(amqp_url: str, *, exchange: str, binding: str = "#") -> AsyncIterator[AbstractQueue]:
    """Bind a private, auto-deleted queue to the event exchange and yield it for consuming.

    The caller iterates ``queue.iterator()`` and decodes each body with ``genesys_bridge_client.contract.codec``.
    """
    connection = await aio_pika.connect(amqp_url, client_properties={"connection_name": "bridge-cli-tail"})
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=256)
        events = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(events, routing_key=binding)
        yield queue
    finally:
        await connection.close()


async def delete_names(amqp_url: str, *, exchanges: tuple[str, ...] = (), queues: tuple[str, ...] = ()) -> None:
    """Delete exchanges and queues if they exist (demo and benchmark clean-up). Never raises for a missing one."""
    connection = await aio_pika.connect(amqp_url, client_properties={"connection_name": "bridge-cli-cleanup"})
    try:
        for name in queues:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(name)
        for name in exchanges:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(name)
    finally:
        await connection.close()


async def declare_ahead(settings: Settings) -> list[str]:
    """Declare what the bridge declares at start (exchanges, intake queue, dead-letter queue, and the journal
    stream when sessions are durable), so services can publish before the first bridge runs (GitOps).

    Idempotent, and safe while bridges run: the arguments are the bridge's own. Returns what was declared,
    as ``kind name`` lines.

    Raises:
        BrokerUnavailable: the broker cannot be reached.
        BrokerError: it refused (credentials, or an existing entity with other arguments).
        StoreError: the journal stream cannot be declared (its message names the cause).
    """
    connection = await open_connection(settings, name="bridge-cli-declare")
    try:
        channel = await connection.channel()
        try:
            topology = await declare_topology(channel, settings)
        except Exception as exc:
            raise broker_error(exc) from exc
    finally:
        await close_quietly(connection)
    declared = [
        f"exchange {topology.command_exchange.name}",
        f"queue {topology.intake_queue.name}",
        f"exchange {topology.event_exchange.name}",
        f"queue {topology.dead_letter_queue.name}",
    ]
    if settings.durable_sessions:
        async with open_stream_journal(settings, connection_name="bridge-cli-declare-journal") as journal:
            declared.append(f"stream {journal.stream}")
    return declared
