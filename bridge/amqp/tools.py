"""Small client-side helpers for the shell and the demo: publish a command, follow events, declare ahead.

These are what an integrating service does, written with aio-pika and the contract only.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
from aio_pika.abc import AbstractQueue

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

    async def send(self, command: Mapping[str, Any] | bytes, *, reply_to: str | None = None) -> str:
        """Publish one command (a dict is JSON-encoded; ``command_id`` is filled in when missing).

        Returns the command id. The routing key is the command type, as the contract asks.
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
            ),
            routing_key=routing_key,
        )
        return command_id


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
