"""``BridgeClient``: commands to genesys-bridge with their settled outcomes, and typed events, over RabbitMQ.

One client is one AMQP connection with two channels: one publishes commands with publisher confirms and
consumes their replies from a private queue, the other carries the event streams. Nothing is global: open
as many clients as you like, each with ``async with`` (or :meth:`BridgeClient.connect` and
:meth:`BridgeClient.close`).

Request/reply follows AMQP conventions: each command is published with ``reply_to`` = the client's reply
queue and ``correlation_id`` = its ``command_id`` (or, for an id longer than the property holds, its
``correlation_key``); the bridge sends only the settled outcome there, with the same ``correlation_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Final, Self

import aio_pika
import aio_pika.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from genesys_bridge_client.contract.codec import decode_event
from genesys_bridge_client.contract.commands import (
    AttachmentRefresh,
    Command,
    JourneyContext,
    MessageSend,
    SessionAuth,
    SessionEnd,
    SessionLogout,
    SessionStart,
    TypingSend,
)
from genesys_bridge_client.contract.content import AttachmentUpload, ButtonResponse
from genesys_bridge_client.contract.events import CommandOutcome, Event
from genesys_bridge_client.contract.properties import correlation_key, fitting_property

__all__ = [
    "DEFAULT_COMMAND_EXCHANGE",
    "DEFAULT_EVENT_EXCHANGE",
    "BridgeClient",
    "BridgeNotDeclared",
    "EventStream",
    "OutcomeTimeout",
]

log = logging.getLogger("genesys_bridge_client")

DEFAULT_COMMAND_EXCHANGE: Final = "genesys.commands"
DEFAULT_EVENT_EXCHANGE: Final = "genesys.events"
#: How long a command waits for its settled outcome unless told otherwise. The bridge settles most commands
#: in milliseconds; a command that waits for a reconnect or a rate limit can take tens of seconds.
DEFAULT_TIMEOUT_S: Final = 60.0


class OutcomeTimeout(TimeoutError):
    """No settled outcome came within the timeout. The command may still run: publish the *same* command
    again (same ``command_id``) to get its outcome; the bridge never runs one ``command_id`` twice."""

    def __init__(self, command: Command, timeout: float) -> None:
        super().__init__(f"no outcome for {command.type} {command.command_id} within {timeout:g} s")
        self.command = command


class BridgeNotDeclared(RuntimeError):
    """The bridge's exchanges do not exist yet: start a bridge first, or run ``genesys-bridge declare``."""


class BridgeClient:
    """Publish commands to genesys-bridge and read its events.

    Args:
        url: the AMQP URL of the broker the bridge uses, e.g. ``amqp://guest:guest@localhost/``.
        route: your service's owner token. Sessions you start carry it (unless a call names another), so
            their events are routed ``<type>.<deployment>.<route>``, and :meth:`events` binds ``#.<route>``
            by default: you receive your own conversations only.
        command_exchange, event_exchange: the bridge's ``BRIDGE_COMMAND_EXCHANGE``/``BRIDGE_EVENT_EXCHANGE``.
        timeout: the default wait for a command's outcome, in seconds.
        connection_name: how the connection shows in the broker's UI.
    """

    def __init__(
        self,
        url: str,
        *,
        route: str | None = None,
        command_exchange: str = DEFAULT_COMMAND_EXCHANGE,
        event_exchange: str = DEFAULT_EVENT_EXCHANGE,
        timeout: float = DEFAULT_TIMEOUT_S,
        connection_name: str = "genesys-bridge-client",
    ) -> None:
        self._url = url
        self.route = route
        self._command_exchange_name = command_exchange
        self._event_exchange_name = event_exchange
        self._timeout = timeout
        self._connection_name = connection_name
        self._connection: AbstractRobustConnection | None = None
        self._commands: AbstractExchange | None = None
        self._reply_queue: str | None = None
        self._events_channel: AbstractChannel | None = None
        self._waiting: dict[str, asyncio.Future[CommandOutcome]] = {}
        self._waiters: dict[str, int] = {}

    # --- lifecycle -----------------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect, check that the bridge's exchanges exist, and open the reply queue.

        Raises:
            BridgeNotDeclared: the command or event exchange does not exist yet.
            aio_pika/aiormq connection errors when the broker cannot be reached.
        """
        if self._connection is not None:
            raise RuntimeError("the client is connected already")
        connection = await aio_pika.connect_robust(
            self._url, client_properties={"connection_name": self._connection_name}
        )
        try:
            channel = await connection.channel(publisher_confirms=True)
            self._commands = await self._existing(channel, self._command_exchange_name)
            events_channel = await connection.channel()
            await self._existing(events_channel, self._event_exchange_name)
            # Named here, not by the broker: after a broker blip the robust connection declares its queues
            # again by name, and the broker refuses a client declaring an ``amq.gen-*`` name.
            replies = await channel.declare_queue(_private_name(self._connection_name, "replies"), exclusive=True)
            await replies.consume(self._on_reply, no_ack=True)
        except BaseException:
            await connection.close()
            raise
        self._connection, self._events_channel, self._reply_queue = connection, events_channel, replies.name

    async def close(self) -> None:
        """Close the connection. Commands still waiting for an outcome raise ``ConnectionError``."""
        connection, self._connection = self._connection, None
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("the client was closed"))
        self._waiting.clear()
        if connection is not None:
            await connection.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- commands -----------------------------------------------------------------------------------------

    async def start_session(
        self,
        session_id: str,
        *,
        deployment_id: str,
        region: str,
        origin: str | None = None,
        custom_attributes: Mapping[str, str] | None = None,
        initial_message: str | None = None,
        resume_token: str | None = None,
        route: str | None = None,
        auth: SessionAuth | None = None,
        autostart: bool = False,
        journey_context: JourneyContext | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandOutcome:
        """Start a Genesys session for ``session_id`` (unique across every service that shares the bridge).

        ``delivered`` once Genesys configured it; ``rejected`` with ``session_exists`` if the id is live.
        ``route`` defaults to the client's. ``auth`` (an :class:`AuthCodeGrant` or :class:`AuthImplicitGrant`)
        starts an authenticated session; ``autostart`` lets a bot greet first where the deployment allows it.
        Other arguments as :meth:`send`.
        """
        command = SessionStart(
            command_id=command_id or _new_id(),
            session_id=session_id,
            correlation_id=correlation_id,
            deployment_id=deployment_id,
            region=region,
            origin=origin,
            custom_attributes=dict(custom_attributes) if custom_attributes is not None else None,
            initial_message=initial_message,
            resume_token=resume_token,
            route=route or self.route,
            auth=auth,
            autostart=autostart,
            journey_context=journey_context,
        )
        return await self.send(command, headers=headers, timeout=timeout)

    async def send_message(
        self,
        session_id: str,
        text: str | None = None,
        *,
        button_response: ButtonResponse | None = None,
        attachments: Sequence[AttachmentUpload] = (),
        custom_attributes: Mapping[str, str] | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandOutcome:
        """Send a guest message; ``delivered`` (with ``genesys_message_id``) once Genesys echoed it."""
        command = MessageSend(
            command_id=command_id or _new_id(),
            session_id=session_id,
            correlation_id=correlation_id,
            text=text,
            button_response=button_response,
            attachments=list(attachments),
            custom_attributes=dict(custom_attributes) if custom_attributes is not None else None,
        )
        return await self.send(command, headers=headers, timeout=timeout)

    async def send_typing(
        self,
        session_id: str,
        *,
        command_id: str | None = None,
        correlation_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandOutcome:
        """Show the agent that the guest is typing (``rejected``/``typing_disabled`` where the deployment
        does not show typing)."""
        return await self._session_command(TypingSend, session_id, command_id, correlation_id, headers, timeout)

    async def end_session(
        self,
        session_id: str,
        *,
        command_id: str | None = None,
        correlation_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandOutcome:
        """End the session; a ``session.ended`` event follows with the reason."""
        return await self._session_command(SessionEnd, session_id, command_id, correlation_id, headers, timeout)

    async def logout(
        self,
        session_id: str,
        *,
        command_id: str | None = None,
        correlation_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandOutcome:
        """Log an authenticated session's customer out (every device); the session ends ``logged_out``."""
        return await self._session_command(SessionLogout, session_id, command_id, correlation_id, headers, timeout)

    async def _session_command(
        self,
        kind: type[TypingSend | SessionEnd | SessionLogout],
        session_id: str,
        command_id: str | None,
        correlation_id: str | None,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> CommandOutcome:
        """A command that names only its session."""
        command = kind(command_id=command_id or _new_id(), session_id=session_id, correlation_id=correlation_id)
        return await self.send(command, headers=headers, timeout=timeout)

    async def refresh_attachment(
        self,
        session_id: str,
        attachment_id: str,
        *,
        command_id: str | None = None,
        correlation_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandOutcome:
        """Ask for a fresh download URL of an agent's attachment (Genesys' URLs expire)."""
        command = AttachmentRefresh(
            command_id=command_id or _new_id(),
            session_id=session_id,
            correlation_id=correlation_id,
            attachment_id=attachment_id,
        )
        return await self.send(command, headers=headers, timeout=timeout)

    async def send(
        self, command: Command, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> CommandOutcome:
        """Publish ``command`` (confirmed by the broker) and return its settled outcome.

        ``headers`` go on the AMQP message: W3C ``traceparent``/``tracestate`` follow the conversation onto
        its events. Sending a command again with the same ``command_id`` is safe: the bridge answers with the
        original outcome and does not run it twice.

        Raises:
            OutcomeTimeout: no outcome within ``timeout`` (default: the client's).
            ConnectionError: the client was closed while waiting.
            aio_pika.exceptions.DeliveryError: the broker refused the command (e.g. the intake queue is full).
        """
        exchange, reply_queue = self._commands, self._reply_queue
        if exchange is None or reply_queue is None:
            raise RuntimeError("connect the client first (async with BridgeClient(...))")
        wait = self._timeout if timeout is None else timeout
        key = correlation_key(command.command_id)
        future = self._waiting.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[key] = future
        # Sends of one command_id share the future; the last one out forgets it.
        self._waiters[key] = self._waiters.get(key, 0) + 1
        try:
            await exchange.publish(
                aio_pika.Message(
                    command.model_dump_json(exclude_none=True).encode(),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=fitting_property(command.command_id),
                    correlation_id=key,
                    reply_to=reply_queue,
                    headers=dict(headers) if headers else None,
                ),
                routing_key=command.type,
                mandatory=True,
            )
            async with asyncio.timeout(wait):
                return await asyncio.shield(future)
        except TimeoutError:
            raise OutcomeTimeout(command, wait) from None
        finally:
            left = self._waiters.pop(key) - 1
            if left:
                self._waiters[key] = left
            elif self._waiting.get(key) is future:
                del self._waiting[key]

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._waiting.get(message.correlation_id or "")  # correlation_key of the command's id
        if future is None or future.done():
            return  # an outcome whose caller gave up, or a repeat of one already taken
        try:
            event = decode_event(message.body)
        except ValueError as exc:
            future.set_exception(exc)
            return
        if isinstance(event, CommandOutcome) and event.status != "will_retry":
            future.set_result(event)

    # --- events -------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def events(
        self,
        *bindings: str,
        queue: str | None = None,
        prefetch: int = 100,
    ) -> AsyncIterator[EventStream]:
        """A stream of typed events from a queue bound to the event exchange; the queue is declared for you.

        Args:
            bindings: routing-key patterns, e.g. ``"message.received.#"``. Default: ``#.<route>`` when the
                client has a route, else ``#`` (everything).
            queue: a name for a durable quorum queue that keeps events while your service is down (and is
                shared by your replicas); None for a private queue that goes away with the client.
            prefetch: how many unacked events the broker hands over at once.

        Open the stream *before* you start a session, or its first events go by unseen. Each event is acked
        when you ask for the next one, so an event your code did not finish is delivered again
        (at least once: deduplicate by ``event_id``).
        """
        if self._connection is None:
            raise RuntimeError("connect the client first (async with BridgeClient(...))")
        channel = await self._connection.channel()
        try:
            await channel.set_qos(prefetch_count=prefetch)
            exchange = await channel.get_exchange(self._event_exchange_name)
            if queue is None:
                declared = await channel.declare_queue(_private_name(self._connection_name, "events"), exclusive=True)
            else:
                declared = await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
            for binding in bindings or (f"#.{self.route}" if self.route else "#",):
                await declared.bind(exchange, routing_key=binding)
            yield EventStream(declared)
        finally:
            await channel.close()

    @staticmethod
    async def _existing(channel: AbstractChannel, name: str) -> AbstractExchange:
        try:
            return await channel.declare_exchange(name, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity as exc:
            raise BridgeNotDeclared(
                f"exchange {name!r} does not exist: start a bridge first, or run `genesys-bridge declare`"
            ) from exc


class EventStream:
    """Typed events from one queue, in arrival order. Iterate with ``async for``; see :meth:`BridgeClient.events`."""

    def __init__(self, queue: AbstractQueue) -> None:
        self.queue = queue

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        async with self.queue.iterator() as messages:
            async for message in messages:
                try:
                    event = decode_event(message.body)
                except ValueError:
                    # A newer bridge may publish event types this client does not know yet: skip them.
                    log.warning("genesys_bridge_client: skipped an event it cannot decode (type %r)", message.type)
                    await message.ack()
                    continue
                yield event
                await message.ack()


def _new_id() -> str:
    return uuid.uuid4().hex


def _private_name(prefix: str, kind: str) -> str:
    return f"{prefix}.{kind}.{uuid.uuid4().hex}"
