"""Publishing events with publisher confirms, a bounded outage buffer and its own reconnect loop.

:class:`AmqpEventPublisher` implements :class:`bridge.ports.EventSink`. ``publish`` returns once the
broker confirmed the event. Many ``publish`` calls may be in flight at once on the one channel: each
queues its frames in call order and waits for its confirm (:func:`bridge.amqp.confirm.publish_confirmed`),
so confirms are pipelined (measured alone: one-by-one confirms cap at ~1.8k msg/s, pipelined ~4k).

Two paths:

- **Fast path** (connected, nothing buffered): the caller's own task publishes and awaits the confirm,
  bounded by ``publish_timeout_s`` (``PublishTimeout``, retryable: events are idempotent by id).
- **Buffered path** (broker away, or the link broke under this publish): the event joins a FIFO
  backlog of at most ``publish_buffer_size`` events. ``publish`` waits for room when it is full
  (back-pressure, never drop) and then for the confirm after the reconnect. The reconnect loop
  re-declares the topology, publishes the backlog in order (pipelined, in windows), and only then
  reopens the fast path, so buffered events go out before newer ones.

``mandatory`` is set on every publish. A return is *resolved*, not raised: an event exchange with no
queue bound returns everything, which is normal for events nobody subscribed to, and a vanished
``reply_to`` queue must not fail the command whose outcome is already on the event exchange. Returns
are logged and counted in ``events_returned{destination}``. Dead-letter copies (:meth:`dead_letter`)
are the exception: a return there means the DLQ is missing and raises ``PublishReturned``. An informational
event whose routing key was just returned is not published again for a while (:mod:`bridge.amqp.unroutable`).

The outage buffer itself (bounded FIFO, back-pressure, its gauge) is :mod:`bridge.amqp.outage`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType
from typing import Final, TypeGuard

import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from bridge.amqp.confirm import publish_confirmed
from bridge.amqp.connection import BrokerLinks, Connect, broker_error, connection_lost, open_channel, open_connection
from bridge.amqp.link import BrokerLink
from bridge.amqp.messages import Outbound, dead_letter_message, event_message
from bridge.amqp.outage import OutageBuffer, PendingEvent
from bridge.amqp.topology import TopologyNames, declare_topology
from bridge.amqp.unroutable import UnroutableKeys
from bridge.config import Settings
from bridge.errors import BrokerError, BrokerUnavailable, PublishReturned
from bridge.observability.metrics import Metrics
from bridge.ports import Clock, LoopClock, TraceContext, event_routing_key
from genesys_bridge_client.contract import Event

__all__ = ["AmqpEventPublisher"]

log = structlog.get_logger(__name__)

#: Buffered events published concurrently per round when the broker is back (confirm pipelining).
FLUSH_WINDOW: Final = 512
LINK_NAME: Final = "publisher"


class _LinkLost(Exception):
    """Internal: the channel or connection broke under a publish. Carries the mapped error."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _event_failed(result: BaseException | None) -> TypeGuard[Exception]:
    """Whether ``result`` of one event's publish is a failure of that event alone: an exception that is
    neither the link's (lost, no confirm, nack) nor a cancellation."""
    return isinstance(result, Exception) and not isinstance(result, (_LinkLost, BrokerError))


@dataclass(eq=False, slots=True)
class _Route:
    """Where to publish on an open channel. ``lost`` completes when the link breaks."""

    channel: AbstractChannel
    events: str  # the event exchange's name ("" is the default exchange, by queue name)
    lost: asyncio.Future[None]


class AmqpEventPublisher(BrokerLink[_Route]):
    """Publishes events to the event exchange with confirms. Implements ``EventSink``.

    Use as ``async with AmqpEventPublisher(settings, metrics) as publisher:`` or call :meth:`start`
    and :meth:`close` from the same task. The publisher owns its connection (separate from the
    intake's, so broker flow control on publishing never stalls acks) and its reconnect task. A final
    broker error (bad credentials, a queue declared with other arguments) ends that task, which
    cancels the owner through the TaskGroup: the error surfaces from ``__aexit__``/:meth:`close`.

    Args:
        settings: names, ``publish_timeout_s``, ``publish_buffer_size``, backoff bounds.
        metrics: ``events_published``, ``publish_confirm_latency``, ``publish_buffer``,
            ``events_returned``, ``reconnects``, ``broker_connected`` (via ``links``).
        links: shared broker-link health (one per process, also given to the intake).
        connection_name: shown by the broker (``rabbitmqctl list_connections client_properties``).
        connect: opens the connection; tests put a gate in front of :func:`open_connection`.
        clock: times the hold of unroutable routing keys (:mod:`bridge.amqp.unroutable`).
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        links: BrokerLinks | None = None,
        connection_name: str = "genesys-bridge.publisher",
        connect: Connect = open_connection,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(
            settings, metrics, link=LINK_NAME, links=links, connection_name=connection_name, connect=connect
        )
        self._names = TopologyNames.from_settings(settings)
        self._timeout_s = settings.publish_timeout_s
        self._backlog = OutageBuffer(settings.publish_buffer_size, metrics.publish_buffer)
        self._in_flight = 0  # publish() calls that have not returned
        self._idle = asyncio.Event()
        self._idle.set()
        self._route: _Route | None = None
        self._connected = asyncio.Event()
        self._closing = False  # publish() refuses new events
        self._closed = False  # the link's task ended: nothing buffered can be confirmed any more
        self._unroutable = UnroutableKeys(clock or LoopClock())

    # --- lifecycle (start, __aenter__, __aexit__: BrokerLink) -----------------------------------

    async def close(self, timeout_s: float | None = None) -> None:
        """Flush, then close: stop accepting, wait up to ``timeout_s`` (default ``publish_timeout_s``)
        for in-flight and buffered events to be confirmed, then drop the connection.

        Events still unconfirmed after the timeout fail their waiting ``publish`` with
        ``BrokerUnavailable`` and are logged (``publisher_closed_unflushed``).
        """
        await self._shutdown(None, None, None, timeout_s)

    async def _shutdown(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        timeout_s: float | None = None,
    ) -> None:
        if not self._started or self._closing:
            return
        self._closing = True
        try:
            if exc is None:
                await self._flushed(self._timeout_s if timeout_s is None else timeout_s)
        finally:
            try:
                await self._close_link(exc_type, exc, tb)
            finally:
                self._closed = True
                self._fail_backlog(BrokerUnavailable("the publisher was closed before the broker confirmed"))

    async def _flushed(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` until nothing is in flight or buffered; the link keeps reconnecting."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            log.warning("publisher_closed_unflushed", buffered=self._backlog.buffered, in_flight=self._in_flight)

    @property
    def connected(self) -> bool:
        """True while the publish channel is open and nothing is left in the outage buffer."""
        return self._route is not None

    async def wait_connected(self) -> None:
        """Wait until :attr:`connected` (the first connect, or the end of a reconnect and flush)."""
        await self._connected.wait()

    # --- EventSink --------------------------------------------------------------------------------

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
        """Publish ``event`` to the event exchange (and to ``reply_to`` via the default exchange).

        Returns when the broker confirmed every destination. While the broker is away the event is
        buffered and this waits; when the buffer is full it waits for room first.

        Raises:
            PublishTimeout: connected, but no confirm within ``publish_timeout_s`` (retryable).
            BrokerUnavailable: the broker nacked the event (retryable), or the publisher is closed.
        """
        if self._closing:
            raise BrokerUnavailable("the publisher is closed")
        routing_key = event_routing_key(event.type, deployment_id, route)
        if reply_to is None and self._unroutable.skips(event.type, routing_key):
            self._metrics.events_skipped.labels(type=event.type).inc()
            return
        pending = PendingEvent(
            message=event_message(event, correlation_id=correlation_id, trace=trace),
            routing_key=routing_key,
            reply_to=reply_to,
            event_type=event.type,
        )
        self._in_flight += 1
        self._idle.clear()
        try:
            while True:
                link = self._route
                if link is not None:
                    try:
                        await self._send(link, pending)
                    except _LinkLost as lost:
                        self._lose(link, lost.error)
                    else:
                        return
                if await self._buffer(pending):
                    return
        finally:
            self._in_flight -= 1
            self._check_idle()

    # --- dead letters (used by the intake's deliveries) -----------------------------------------

    async def dead_letter(self, original: AbstractIncomingMessage, *, reason: str, detail: str) -> None:
        """Publish a copy of ``original`` to the DLQ with ``reason``/``detail`` headers; wait for the confirm.

        Not buffered: waits at most ``publish_timeout_s`` for the link, then fails, so the caller can
        leave the original unacked (the broker redelivers it) instead of holding it through an outage.

        Raises:
            BrokerUnavailable, PublishTimeout: retryable; the copy may or may not be in the DLQ.
            PublishReturned: the DLQ does not exist (the broker could not route the copy).
        """
        message = dead_letter_message(original, reason=reason, detail=detail)
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._connected.wait()
        except TimeoutError:
            raise BrokerUnavailable("no broker connection to dead-letter on") from None
        route = self._route
        if route is None:
            raise BrokerUnavailable("no broker connection to dead-letter on")
        try:
            routed = await self._publish_one(route, "", message, self._names.dead_letter_queue)
        except _LinkLost as lost:
            self._lose(route, lost.error)
            raise lost.error from None
        if not routed:
            raise PublishReturned(f"dead-letter queue {self._names.dead_letter_queue!r} does not exist")

    # --- internals --------------------------------------------------------------------------------

    async def _send(self, route: _Route, pending: PendingEvent) -> None:
        """Publish ``pending`` to every destination not yet confirmed. Raises _LinkLost or BrokerError."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        if pending.needs_topic:
            routed = await self._publish_one(route, route.events, pending.message, pending.routing_key)
            pending.needs_topic = False
            if not routed:
                self._returned("events", pending)
        if pending.reply_to is not None and pending.needs_reply:
            routed = await self._publish_one(route, "", pending.message, pending.reply_to)
            pending.needs_reply = False
            if not routed:
                self._returned("reply_to", pending)
        pending.confirmed = True
        self._metrics.events_published.labels(type=pending.event_type).inc()
        self._metrics.publish_confirm_latency.observe(loop.time() - started)

    async def _publish_one(self, route: _Route, exchange: str, message: Outbound, routing_key: str) -> bool:
        """Publish with ``mandatory`` and wait for the confirm. True if routed, False if returned."""
        try:
            return await publish_confirmed(
                route.channel,
                message,
                exchange=exchange,
                routing_key=routing_key,
                timeout_s=self._timeout_s,
                what=routing_key,
            )
        except Exception as exc:
            mapped = broker_error(exc)
            if mapped is exc:
                raise  # ours already (a timeout, a nack), or a bug: keep it as it is
            raise _LinkLost(mapped) from exc

    def _returned(self, destination: str, pending: PendingEvent) -> None:
        self._metrics.events_returned.labels(destination=destination).inc()
        if destination == "events":
            self._unroutable.returned(pending.event_type, pending.routing_key)
        # An event nobody binds to is normal (debug); a reply_to queue that does not exist is the
        # integrator's bug (warning).
        (log.warning if destination == "reply_to" else log.debug)(
            "event_returned",
            destination=destination,
            event_type=pending.event_type,
            routing_key=pending.reply_to if destination == "reply_to" else pending.routing_key,
        )

    async def _buffer(self, pending: PendingEvent) -> bool:
        """Buffer ``pending`` and wait for its confirm (True), or return False if the link came back
        while we waited for room: the backlog was flushed, so the caller publishes directly."""
        await self._backlog.reserve()  # back-pressure: wait for room, never drop
        if self._closed:
            self._backlog.release()
            raise BrokerUnavailable("the publisher was closed before the broker confirmed")
        if self._route is not None:
            self._backlog.release()
            return False
        self._backlog.append(pending)
        # Shielded: a caller that gives up waiting does not withdraw the event; it is still published.
        await asyncio.shield(pending.done)
        return True

    def _check_idle(self) -> None:
        if self._in_flight == 0 and self._backlog.buffered == 0:
            self._idle.set()

    def _fail_backlog(self, error: BrokerError) -> None:
        self._backlog.fail_all(error)
        self._check_idle()

    def _lose(self, route: _Route, error: BaseException) -> None:
        """The link under ``route`` broke: close the fast path and wake the reconnect loop."""
        if self._route is route:
            self._route = None
            self._connected.clear()
            self._links.set(LINK_NAME, False)
            if self._closing:  # our own close() dropped the connection: not news
                log.debug("broker_link_closed", link=LINK_NAME)
            else:
                log.warning("broker_link_lost", link=LINK_NAME, error=str(error))
        if not route.lost.done():
            route.lost.set_result(None)

    # --- one link (BrokerLink hooks) ----------------------------------------------------------------

    async def _prepare(self, connection: AbstractConnection) -> _Route:
        """Open the confirm channel and declare the topology on a fresh connection."""
        channel = await open_channel(connection, publisher_confirms=True)
        topology = await declare_topology(channel, self._names)
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def _closed(*_: object) -> None:
            if not lost.done():
                lost.set_result(None)

        connection.close_callbacks.add(_closed)
        channel.close_callbacks.add(_closed)
        if channel.is_closed or connection_lost(connection):
            # Closed during the declares, before the callbacks were added: they would never run.
            raise BrokerUnavailable("the connection closed while the link was prepared")
        return _Route(channel, topology.event_exchange.name, lost)

    async def _serve(self, route: _Route) -> None:
        """Flush the backlog, open the fast path, wait for the loss."""
        try:
            await self._flush(route)
            self._route = route
            self._connected.set()
            self._links.set(LINK_NAME, True)
            log.info("broker_link_up", link=LINK_NAME)
            self._came_up()
            await route.lost
        finally:
            self._lose(route, BrokerUnavailable("connection closed"))

    async def _flush(self, route: _Route) -> None:
        """Publish the backlog in order, ``FLUSH_WINDOW`` at a time. Unconfirmed events stay at the head."""
        while self._backlog:
            batch = self._backlog.take(FLUSH_WINDOW)
            results: list[BaseException | None] = [None] * len(batch)
            try:
                results = await asyncio.gather(*(self._send(route, p) for p in batch), return_exceptions=True)
            finally:
                # An error is the event's own only while the link is intact: one that broke may have
                # failed the event with anything, and the event then waits for the next link.
                intact = not route.lost.done() and not route.channel.is_closed
                kept: list[PendingEvent] = []
                for pending, result in zip(batch, results, strict=True):
                    if pending.confirmed:
                        self._backlog.settle(pending)
                    elif intact and _event_failed(result):
                        # A failure of this event alone (a bug): its publisher gets it, as it would on the
                        # direct path, and the link goes on with the others. Raised here, it ended the
                        # link's task and the process.
                        log.error("event_publish_failed", event_type=pending.event_type, exc_info=result)
                        self._backlog.fail(pending, result)
                    else:
                        kept.append(pending)
                self._backlog.put_back(kept)
                self._check_idle()
            for result in results:
                if isinstance(result, _LinkLost):
                    raise result.error
                if isinstance(result, BrokerError):
                    # A timeout or nack while flushing: treat the link as unhealthy and reconnect.
                    raise BrokerUnavailable(f"flush failed: {result}") from result
                if isinstance(result, BaseException) and not _event_failed(result):
                    raise result  # a cancellation
            if not intact:
                raise BrokerUnavailable("the link broke while the outage buffer was flushed")
