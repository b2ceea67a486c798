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
from dataclasses import dataclass, field
from typing import Any, Final

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from bridge.amqp.confirm import publish_confirmed
from bridge.amqp.connection import ReopeningConnection, broker_error, close_quietly, open_channel, open_connection
from bridge.amqp.journal import StreamJournal
from bridge.amqp.messages import (
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    REJECT_DETAIL_HEADER,
    REJECT_REASON_HEADER,
    Outbound,
    copy_message,
)
from bridge.amqp.repartition import distributing_marker, staging_queue
from bridge.amqp.topology import TopologyNames, declare_partition_queue, declare_topology
from bridge.config import Settings
from bridge.partition.layout import hunger_queue, journal_stream_of, partition_queue, presence_queue
from genesys_bridge_client.contract.properties import correlation_key, fitting_property

__all__ = [
    "CommandPublisher",
    "DeadLetter",
    "DeadLetterQueue",
    "DeploymentNames",
    "ReplayResult",
    "declare_ahead",
    "delete_deployment",
    "delete_names",
    "deployment_queues",
    "follow_events",
]

#: Seconds ``dlq replay`` waits for the broker to confirm one replayed command.
REPLAY_CONFIRM_TIMEOUT_S: Final = 30.0


class CommandPublisher:
    """Publishes commands to the command exchange with confirms. Use as an async context manager."""

    def __init__(self, amqp_url: str, *, exchange: str) -> None:
        self._url = amqp_url
        self._exchange_name = exchange
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def __aenter__(self) -> CommandPublisher:
        """Connect and declare the command exchange.

        Raises:
            BrokerUnavailable, BrokerError: the broker cannot be reached or refused; nothing is left open.
        """
        try:
            self._connection = await aio_pika.connect(
                self._url, client_properties={"connection_name": "bridge-cli-send"}
            )
            channel = await open_channel(self._connection, publisher_confirms=True)
            self._exchange = await channel.declare_exchange(
                self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
        except Exception as exc:
            await close_quietly(self._connection)
            self._connection = None
            raise broker_error(exc) from exc
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
                message_id=fitting_property(command_id or None),
                reply_to=reply_to,
                correlation_id=fitting_property(correlation_id),
            ),
            routing_key=routing_key,
        )
        return command_id

    async def request(self, command: Mapping[str, Any] | bytes, *, timeout_s: float) -> tuple[str, bytes | None]:
        """Publish one command as a request and wait up to ``timeout_s`` for its settled ``command.outcome``.

        The command carries a private reply queue (``reply_to``) and the AMQP ``correlation_id`` = its
        ``command_id`` (for raw bytes: the ``command_id`` in them when they are a JSON object with one, else a
        fresh id; its ``correlation_key`` for an id longer than the property holds), which the bridge copies
        onto the outcome. Returns ``(command id, outcome body)``, the body ``None`` when nothing came in time.
        The caller decodes the body (``genesys_bridge_client.contract.codec.decode_event``).
        """
        assert self._connection is not None, "use CommandPublisher as an async context manager"
        command_id = _request_id(command)
        if not isinstance(command, bytes):
            command = {**command, "command_id": command_id}
        correlation_id = correlation_key(command_id)
        channel = await open_channel(self._connection, publisher_confirms=True)
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
                    return command_id, await answered
            except TimeoutError:
                return command_id, None
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
        channel = await open_channel(connection, publisher_confirms=True)
        await channel.set_qos(prefetch_count=256)
        events = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(events, routing_key=binding)
        yield queue
    finally:
        await connection.close()


def deployment_queues(
    *, intake_queue: str, dead_letter_queue: str, journal_stream: str, partitions: int
) -> tuple[str, ...]:
    """Every queue and stream a deployment declares: the intake queue, its partition, presence, hunger and
    repartition queues, the dead-letter queue, and the journal streams (the partitions' and the single
    stream of a release before partitions)."""
    return (
        intake_queue,
        *(partition_queue(intake_queue, n) for n in range(partitions)),
        presence_queue(intake_queue),
        hunger_queue(intake_queue),
        staging_queue(intake_queue),
        distributing_marker(intake_queue, partitions),
        dead_letter_queue,
        journal_stream,
        *(journal_stream_of(journal_stream, n) for n in range(partitions)),
    )


@dataclass(frozen=True)
class DeploymentNames:
    """The exchanges, queues and streams of a deployment whose names all start with ``prefix`` (tests,
    benchmarks and sandboxes run each on names of their own)."""

    prefix: str

    @property
    def command_exchange(self) -> str:
        return f"{self.prefix}.commands"

    @property
    def intake_queue(self) -> str:
        return f"{self.prefix}.intake"

    @property
    def event_exchange(self) -> str:
        return f"{self.prefix}.events"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}.dlq"

    @property
    def journal_stream(self) -> str:
        return f"{self.prefix}.journal"

    def queues(self, partitions: int = Settings.model_fields["partitions"].default) -> tuple[str, ...]:
        """Every queue and stream a deployment of ``partitions`` partitions declares under these names."""
        return deployment_queues(
            intake_queue=self.intake_queue,
            dead_letter_queue=self.dead_letter_queue,
            journal_stream=self.journal_stream,
            partitions=partitions,
        )

    def environment(self) -> dict[str, str]:
        """The ``BRIDGE_*`` variables that give a daemon these names."""
        return {
            "BRIDGE_COMMAND_EXCHANGE": self.command_exchange,
            "BRIDGE_INTAKE_QUEUE": self.intake_queue,
            "BRIDGE_EVENT_EXCHANGE": self.event_exchange,
            "BRIDGE_DEAD_LETTER_QUEUE": self.dead_letter_queue,
            "BRIDGE_JOURNAL_STREAM": self.journal_stream,
        }


async def delete_deployment(amqp_url: str, settings: Settings) -> None:
    """Delete every exchange, queue and stream a bridge deployment with ``settings`` declares (test and
    demo clean-up): the two exchanges and :func:`deployment_queues`. Raises as :func:`delete_names`."""
    await delete_names(
        amqp_url,
        exchanges=(settings.command_exchange, settings.event_exchange),
        queues=deployment_queues(
            intake_queue=settings.intake_queue,
            dead_letter_queue=settings.dead_letter_queue,
            journal_stream=settings.journal_stream,
            partitions=settings.partitions,
        ),
    )


async def delete_names(amqp_url: str, *, exchanges: tuple[str, ...] = (), queues: tuple[str, ...] = ()) -> None:
    """Delete exchanges and queues if they exist (demo, benchmark and test clean-up). Never raises for a
    missing one.

    Raises:
        BrokerUnavailable, BrokerError: the broker cannot be reached (or refused the login).
    """
    try:
        connection = await aio_pika.connect(amqp_url, client_properties={"connection_name": "bridge-cli-cleanup"})
    except Exception as exc:
        raise broker_error(exc) from exc
    try:
        for name in queues:
            channel = await open_channel(connection, publisher_confirms=True)
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(name)
        for name in exchanges:
            channel = await open_channel(connection, publisher_confirms=True)
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(name)
    finally:
        await connection.close()


async def declare_ahead(settings: Settings) -> list[str]:
    """Declare what the bridge declares at start (exchanges, intake queue, partition queues, dead-letter
    queue, and the partitions' journal streams when sessions are durable), so services can publish before
    the first bridge runs (GitOps).

    Idempotent, and safe while bridges run: the arguments are the bridge's own. Returns what was declared,
    as ``kind name`` lines.

    Raises:
        BrokerUnavailable: the broker cannot be reached.
        BrokerError: it refused (credentials, or an existing entity with other arguments).
        StoreError: a journal stream cannot be declared (its message names the cause).
    """
    names = TopologyNames.from_settings(settings)
    partitions = [partition_queue(settings.intake_queue, n) for n in range(settings.partitions)]
    connection = await open_connection(settings, name="bridge-cli-declare")
    try:
        channel = await open_channel(connection, publisher_confirms=True)
        try:
            topology = await declare_topology(channel, settings)
            for queue in partitions:
                await declare_partition_queue(channel, names, queue)
        except Exception as exc:
            raise broker_error(exc) from exc
    finally:
        await close_quietly(connection)
    declared = [
        f"exchange {topology.command_exchange.name}",
        f"queue {topology.intake_queue.name}",
        *(f"queue {queue}" for queue in partitions),
        f"exchange {topology.event_exchange.name}",
        f"queue {topology.dead_letter_queue.name}",
    ]
    if settings.durable_sessions:
        journals = ReopeningConnection(settings, name="bridge-cli-declare-journal")
        try:
            for n in range(settings.partitions):
                async with StreamJournal.from_settings(journals, settings, partition=n) as journal:
                    declared.append(f"stream {journal.stream}")
        finally:
            await journals.close()
    return declared


#: Headers that describe a dead-lettering, not the command: a replayed command goes out without them, so a
#: second rejection is recorded afresh instead of on top of the first.
_DEAD_LETTER_HEADERS = frozenset(
    {
        REJECT_REASON_HEADER,
        REJECT_DETAIL_HEADER,
        ORIGINAL_EXCHANGE_HEADER,
        ORIGINAL_ROUTING_KEY_HEADER,
        "x-death",
        "x-first-death-reason",
        "x-first-death-queue",
        "x-first-death-exchange",
        "x-last-death-reason",
        "x-last-death-queue",
        "x-last-death-exchange",
    }
)

#: Characters of a body shown by :attr:`DeadLetter.preview`.
PREVIEW_CHARS = 160


def _text(value: object) -> str | None:
    # Header strings arrive as str or bytes depending on how the publisher encoded them.
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered command as read from the DLQ: why it is there, what it was, and its bytes.

    ``reason`` is the bridge's ``x-bridge-reject-reason``, or for a command RabbitMQ dead-lettered itself
    (delivery limit) the ``x-death`` reason, e.g. ``delivery_limit``. ``command_id``, ``session_id`` and
    ``type`` are read from the body when it is a JSON object that has them; ``message_id`` is the AMQP
    property (the contract recommends the ``command_id``; some clients fill in one of their own).
    """

    reason: str | None
    detail: str | None
    original_exchange: str | None
    original_routing_key: str | None
    command_id: str | None
    session_id: str | None
    type: str | None
    message_id: str | None
    body: bytes = field(repr=False)

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> DeadLetter:
        """Read a DLQ message (never raises for odd headers or bodies)."""
        headers = dict(message.headers or {})
        deaths = headers.get("x-death")
        death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping) else {}
        death_keys = death.get("routing-keys")
        try:
            data = json.loads(message.body)
        except ValueError:
            data = None
        fields = data if isinstance(data, dict) else {}

        def body_field(name: str) -> str | None:
            value = fields.get(name)
            return value if isinstance(value, str) else None

        return cls(
            reason=_text(headers.get(REJECT_REASON_HEADER)) or _text(death.get("reason")),
            detail=_text(headers.get(REJECT_DETAIL_HEADER)),
            original_exchange=_text(headers.get(ORIGINAL_EXCHANGE_HEADER)) or _text(death.get("exchange")),
            original_routing_key=_text(headers.get(ORIGINAL_ROUTING_KEY_HEADER))
            or (_text(death_keys[0]) if isinstance(death_keys, list) and death_keys else None),
            command_id=body_field("command_id"),
            session_id=body_field("session_id"),
            type=body_field("type"),
            message_id=message.message_id,
            body=message.body,
        )

    @property
    def preview(self) -> str:
        """The start of the body as one line of text (undecodable bytes replaced)."""
        text = self.body[:PREVIEW_CHARS].decode("utf-8", errors="replace")
        text = text.replace("\r", "\\r").replace("\n", "\\n")
        return text + ("..." if len(self.body) > PREVIEW_CHARS else "")

    @property
    def routing_key(self) -> str:
        """Where a replay publishes it: the original routing key, else its type, else ``unknown``."""
        return self.original_routing_key or self.type or "unknown"

    def as_dict(self) -> dict[str, str | None]:
        """The readable fields plus the body preview, for JSON output."""
        return {
            "reason": self.reason,
            "detail": self.detail,
            "original_exchange": self.original_exchange,
            "original_routing_key": self.original_routing_key,
            "command_id": self.command_id,
            "session_id": self.session_id,
            "type": self.type,
            "message_id": self.message_id,
            "body_preview": self.preview,
        }


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What :meth:`DeadLetterQueue.replay` did: republished and removed, left because the broker returned
    the republished copy (no queue bound for its routing key), and how many others stayed (not matching, or
    beyond the limit)."""

    replayed: list[DeadLetter]
    unroutable: list[DeadLetter]
    kept: int


class DeadLetterQueue:
    """Read and replay the bridge's dead-letter queue (a quorum queue). Use as an async context manager.

    Both operations take messages with ``basic.get`` and keep them unacknowledged while they look further,
    so no message is seen twice in one pass; what they do not remove goes back to the queue with a nack
    (requeue), marked redelivered. The queue must exist (``genesys-bridge declare`` or a bridge made it).
    Interrupting a replay between a republish and its ack leaves the command in both places: the bridge
    deduplicates a replayed command by its ``command_id``.
    """

    def __init__(self, amqp_url: str, *, queue: str, command_exchange: str) -> None:
        self._url = amqp_url
        self._queue_name = queue
        self._exchange_name = command_exchange
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def __aenter__(self) -> DeadLetterQueue:
        try:
            self._connection = await aio_pika.connect(
                self._url, client_properties={"connection_name": "bridge-cli-dlq"}
            )
        except Exception as exc:
            raise broker_error(exc) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _queue(self, channel: aio_pika.abc.AbstractChannel) -> AbstractQueue:
        return await channel.get_queue(self._queue_name, ensure=True)

    async def browse(self, *, limit: int | None = None) -> list[DeadLetter]:
        """Up to ``limit`` dead-lettered commands in queue order, all left in the queue.

        Each one goes back to the queue marked redelivered, and RabbitMQ may then hand out returned messages
        before the others: the order of a second listing can differ.

        Raises:
            BrokerError: the queue does not exist (``NOT_FOUND``), or the broker refused otherwise.
            BrokerUnavailable: the broker went away.
        """
        try:
            return await self._list(limit)
        except Exception as exc:
            raise broker_error(exc) from exc

    async def _list(self, limit: int | None) -> list[DeadLetter]:
        assert self._connection is not None, "use DeadLetterQueue as an async context manager"
        channel = await open_channel(self._connection, publisher_confirms=True)
        held: list[AbstractIncomingMessage] = []
        try:
            queue = await self._queue(channel)
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                held.append(message)
                if limit is not None and len(held) >= limit:
                    break
            return [DeadLetter.of(message) for message in held]
        finally:
            for message in held:
                await message.nack(requeue=True)
            await channel.close()

    async def replay(
        self, *, limit: int | None = None, reason: str | None = None, command_id: str | None = None
    ) -> ReplayResult:
        """Republish matching dead-lettered commands to the command exchange under their original routing key,
        each removed from the queue only once the broker confirmed the republish; the others stay.

        A command matches when ``reason`` and ``command_id`` (each when given) equal its own (a body without
        a ``command_id`` is matched by its ``message_id`` property); at most
        ``limit`` are replayed. The replayed copy keeps the body and properties and drops the dead-letter
        headers. A copy the broker returns (nothing bound for its routing key) stays in the queue.

        Raises:
            BrokerError: the queue or the command exchange does not exist (``NOT_FOUND``), or the broker
                refused otherwise.
            BrokerUnavailable: the broker went away.
        """
        try:
            return await self._replay(limit, reason, command_id)
        except Exception as exc:
            raise broker_error(exc) from exc

    async def _replay(self, limit: int | None, reason: str | None, command_id: str | None) -> ReplayResult:
        assert self._connection is not None, "use DeadLetterQueue as an async context manager"
        channel = await open_channel(self._connection, publisher_confirms=True)
        confirmed = await open_channel(self._connection, publisher_confirms=True)
        held: list[AbstractIncomingMessage] = []
        replayed: list[DeadLetter] = []
        unroutable: list[DeadLetter] = []
        try:
            await confirmed.get_exchange(self._exchange_name, ensure=True)  # NOT_FOUND when it does not exist
            queue = await self._queue(channel)
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                letter = DeadLetter.of(message)
                wanted = (reason is None or letter.reason == reason) and (
                    command_id is None or (letter.command_id or letter.message_id) == command_id
                )
                if not wanted:
                    held.append(message)  # held, not nacked yet: a requeued message would be taken again
                    continue
                if limit is not None and len(replayed) >= limit:
                    # Past the limit the scan goes on all the same, so that ``kept`` counts every command left.
                    held.append(message)
                    continue
                routed = await publish_confirmed(
                    confirmed,
                    _replayed(message),
                    exchange=self._exchange_name,
                    routing_key=letter.routing_key,
                    timeout_s=REPLAY_CONFIRM_TIMEOUT_S,
                    what=f"exchange {self._exchange_name!r}",
                )
                if not routed:
                    unroutable.append(letter)
                    held.append(message)
                    continue
                await message.ack()
                replayed.append(letter)
            return ReplayResult(replayed, unroutable, kept=len(held) - len(unroutable))
        finally:
            for message in held:
                await message.nack(requeue=True)
            await confirmed.close()
            await channel.close()


def _replayed(message: AbstractIncomingMessage) -> Outbound:
    """The command as it was first published: body and properties, without the dead-letter headers."""
    headers = {k: v for k, v in (message.headers or {}).items() if k not in _DEAD_LETTER_HEADERS}
    return copy_message(message, headers=headers or None)
