"""The command intake: consume the intake queue and hand commands over in delivery order.

:class:`CommandIntake` owns one connection (separate from the publisher's) and one consuming loop.
aio-pika runs each delivery's callback in its own task; our callback only puts the message into a
per-channel inbox (FIFO, bounded by ``prefetch`` because the broker never has more unacked deliveries
outstanding), and a single loop takes them out one by one: decode, then either reject (outcome event +
dead-letter) or ``CommandHandler.submit``. So the handler sees commands strictly in delivery order.

**Partitions** (docs/scaling.md). The same intake consumes the intake queue (as the router) and each
partition queue (as its owner candidate). Every such queue has a single active consumer; a consumer learns
it is the active one from its first delivery (a probe, or a command). A partition's intake has a
:class:`Tenure`: before the first delivery is handed over it calls :meth:`Tenure.gained` (the sessions are
loaded and resumed then), and when the link ends, is handed off (:meth:`CommandIntake.hand_off`) or stops,
it calls :meth:`Tenure.ended` *while the channel is still open*, so the partition is fenced before the broker
can make another replica its owner. Probes are acked and never handed over.

Reconnects are ours (the loop of :class:`~bridge.amqp.link.BrokerLink`), not aio-pika's robust
recovery: on any loss (connection closed, channel closed, consumer cancelled by the broker, e.g.
because the queue was deleted) the intake drops what is left in the dead channel's inbox (the broker
redelivers those), reconnects with backoff, re-declares the topology, consumes again and *verifies*
it: ``basic.consume`` must have been answered with our tag and a passive declare of the queue must
count at least one consumer. Only then is :attr:`consuming` true again (``intake_consuming`` = 1,
``/readyz``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Final, Literal, Protocol

import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from bridge.amqp.connection import (
    BrokerLinks,
    Connect,
    broker_error,
    close_channel_quietly,
    open_channel,
    open_connection,
)
from bridge.amqp.delivery import AmqpDelivery, DeadLetterSink
from bridge.amqp.link import BrokerLink
from bridge.amqp.topology import TopologyNames, declare_partition_queue, declare_topology
from bridge.config import Settings
from bridge.contract.outcomes import command_type_label, rejection_outcome
from bridge.errors import BrokerUnavailable
from bridge.observability.metrics import Metrics
from bridge.partition.layout import PROBE_TYPE
from bridge.ports import Clock, CommandHandler, Envelope, EventSink, LoopClock, TraceContext
from bridge.settle import settle
from genesys_bridge_client.contract.codec import Rejection, decode_command

__all__ = ["CommandIntake", "Tenure"]

log = structlog.get_logger(__name__)

LINK_NAME: Final = "intake"
#: Inbox room beyond ``prefetch`` for the wake-up markers (at most one "lost" and one "stop").
_MARKER_SLOTS: Final = 2


class Tenure(Protocol):
    """A partition's ownership as its consumer sees it (implemented by the partition's owner)."""

    async def gained(self, waiting_since: datetime | None) -> bool:
        """The consumer became the active one (``waiting_since``: the first delivery's publish time, if
        known). Load and resume the partition's sessions before returning; return False to decline it
        (the intake then hands it on without serving a command). Must not raise."""
        ...

    async def ended(self, *, link_lost: bool) -> None:
        """Ownership ends: fence the partition (settle what can be, close its sockets without ending the
        sessions, flush the journal). ``link_lost``: the channel is gone, so be quick. Must not raise."""
        ...


#: Why one generation's consuming ended.
_Ending = Literal["lost", "stopped", "handed_off", "settled"]


@dataclass(eq=False, slots=True)
class _Generation:
    """One connection's worth of consuming. ``None`` in the inbox means "look at the flags"."""

    channel: AbstractChannel
    queue: AbstractQueue
    inbox: asyncio.Queue[AbstractIncomingMessage | None]
    prefetch: int
    lost: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    consumer_tag: str | None = None
    cancelled: bool = False  # basic.cancel answered: nothing more will be delivered on this channel
    owned: bool = False  # a delivery arrived: this consumer is the queue's active one
    settled: bool = False  # stopping, the handler settled all it was given: close the link, nothing to ack

    def mark_lost(self, *_: object) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
            self.inbox.put_nowait(None)

    def wake(self) -> None:
        self.inbox.put_nowait(None)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        # Runs in aiormq's per-delivery task; put_nowait before any await keeps delivery order.
        if self.lost.done():
            # The link is being closed: the close gives this delivery back with the rest, in order. A nack now
            # would put it back ahead of older deliveries still unsettled, and count toward the delivery limit.
            return
        if self.inbox.qsize() >= self.prefetch:
            # More than prefetch outstanding would be a broker bug; never grow past the bound.
            log.error("intake_inbox_overflow", delivery_tag=message.delivery_tag)
            with suppress(Exception):
                await message.nack(requeue=True)
            return
        self.inbox.put_nowait(message)


class CommandIntake(BrokerLink[_Generation]):
    """Consumes commands and hands them to a :class:`~bridge.ports.CommandHandler` in delivery order.

    Use as ``async with CommandIntake(...) as intake:`` or :meth:`start`/:meth:`close` from one task.
    A final broker error (bad credentials, a queue declared with other arguments) ends the intake's
    task, which cancels that task's owner: the error surfaces from ``__aexit__``/:meth:`close`.

    Args:
        settings: queue names, ``prefetch``, ``max_command_bytes``, backoff bounds.
        metrics: ``intake_consuming``, ``broker_connected`` (via ``links``), ``reconnects``,
            ``commands{status="rejected"}``, ``dead_lettered``.
        handler: receives valid commands; owns each ``envelope.delivery`` once ``submit`` returned.
        sink: publishes ``command.outcome`` for rejected commands (``reply_to`` honoured).
        dead_letters: publishes DLQ copies (the ``AmqpEventPublisher``: its connection, not ours).
        clock: ``monotonic`` for ``Envelope.received_at``, ``now`` for outcome timestamps.
        links: shared broker-link health (one per process), so ``broker_connected`` covers both links.
        connection_name: shown by the broker (``rabbitmqctl list_connections client_properties``).
        connect: opens the connection; tests put a gate in front of :func:`open_connection`.
        queue: the queue to consume: the intake queue (default), or a partition queue, declared too.
        tenure: a partition's ownership, told when this consumer becomes and stops being the active one.
        on_probe: called with each probe's publish time (if any), after the probe is acked.
        settle: waits until the handler has settled every delivery it was given (the router's copies in
            flight). A stop awaits it with the consumer still registered, then closes the link instead of
            cancelling first, so the queue stays ours until what we held is back in it.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        handler: CommandHandler,
        sink: EventSink,
        dead_letters: DeadLetterSink,
        clock: Clock | None = None,
        links: BrokerLinks | None = None,
        connection_name: str = "genesys-bridge.intake",
        connect: Connect = open_connection,
        queue: str | None = None,
        tenure: Tenure | None = None,
        on_probe: Callable[[datetime | None], None] | None = None,
        settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._names = TopologyNames.from_settings(settings)
        self._queue = queue or self._names.intake_queue
        link = LINK_NAME if self._queue == self._names.intake_queue else f"{LINK_NAME}:{self._queue}"
        super().__init__(settings, metrics, link=link, links=links, connection_name=connection_name, connect=connect)
        self._tenure = tenure
        self._on_probe = on_probe
        self._settle = settle
        self._handing_off = False
        self._handler = handler
        self._sink = sink
        self._dead_letters = dead_letters
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._current: _Generation | None = None
        self._consuming = False
        self._generation = 0
        self._state = asyncio.Condition()
        self._held: list[AmqpDelivery] = []
        self._stopped = asyncio.Event()  # no further submit will happen
        if tenure is None:
            metrics.intake_consuming.set(0)

    # --- state ------------------------------------------------------------------------------------

    @property
    def consuming(self) -> bool:
        """True while a verified consumer is registered on a live channel."""
        return self._consuming

    @property
    def owned(self) -> bool:
        """True while this consumer is the queue's active one (it has had a delivery on this link)."""
        return self._current is not None and self._current.owned

    @property
    def queue(self) -> str:
        """The queue this intake consumes."""
        return self._queue

    @property
    def generation(self) -> int:
        """How many times consuming (re)started; grows by one per verified (re)consume."""
        return self._generation

    @property
    def consumer_tag(self) -> str | None:
        """The broker's tag of the current consumer, if any."""
        return self._current.consumer_tag if self._current is not None else None

    async def wait_consuming(self, *, after_generation: int = 0) -> int:
        """Wait until consuming with :attr:`generation` > ``after_generation``; return the generation.

        To await a recovery: ``g = intake.generation``, break the link, then
        ``await intake.wait_consuming(after_generation=g)``.
        """
        async with self._state:
            await self._state.wait_for(lambda: self._consuming and self._generation > after_generation)
            return self._generation

    async def _set_consuming(self, consuming: bool) -> None:
        async with self._state:
            if consuming:
                self._generation += 1
            self._consuming = consuming
            if self._tenure is None:
                self._metrics.intake_consuming.set(1 if consuming else 0)
            self._links.set(self._link, consuming)
            self._state.notify_all()

    # --- lifecycle (start, __aenter__, __aexit__: BrokerLink) --------------------------------------

    async def stop_intake(self) -> None:
        """Stop taking commands (SIGTERM drain). Idempotent.

        Cancels the consumer (the broker sends nothing more), requeues deliveries received but not yet
        handed over, and returns once no further ``submit`` will happen. The channel stays open, so
        deliveries already handed over can still be acked, until :meth:`close`. A partition's intake
        fences the partition instead (:meth:`Tenure.ended`), then closes its channel, which gives every
        delivery it held back in order; the router's (``settle``) lets its copies land, then does the same.
        """
        if not self._stopping:
            self._stopping = True
            generation = self._current
            if self._tenure is not None and generation is not None and not generation.lost.done():
                # A partition: fence first (Tenure.ended), with the consumer still registered, so no other
                # replica becomes the owner while this one still holds the sockets.
                generation.wake()
            elif generation is not None and generation.consumer_tag is not None and not generation.lost.done():
                if self._settle is None:
                    await self._cancel(generation)
                else:
                    # What the handler holds settles while our consumer is still registered: cancelled first,
                    # the queue would pass to the next consumer in line, which could copy a session's newer
                    # commands before ours land. What arrives meanwhile is held, as in any drain. Then the
                    # link closes, and the broker returns every delivery left, the held ones included, in
                    # delivery order and in one step, before the next consumer is given anything.
                    await self._settle()
                    generation.settled = True
                generation.wake()
            elif self._task is not None:
                # Not consuming (connecting, or waiting to retry): nothing is outstanding; stop trying, and
                # wait until the loop has really ended, so no consumer outlives the stop. The task itself is
                # awaited: one cancelled before its first step never runs the code that would say so.
                self._task.cancel()
                await asyncio.wait({self._task})
                self._stopped.set()
            else:
                self._stopped.set()  # never started
        await self._stopped.wait()

    async def hand_off(self) -> None:
        """Give the queue up and queue again at the back of the line (balancing). Returns at once.

        The partition is fenced first (:meth:`Tenure.ended`, with the consumer still registered), then the
        connection is closed, which returns every unsettled delivery to the queue in delivery order, and a
        new one subscribes again: the broker has made the next consumer in line the active one by then.
        """
        generation = self._current
        if generation is None or self._stopping or self._handing_off:
            return
        self._handing_off = True
        generation.wake()

    async def close(self) -> None:
        """Stop the intake if needed and close the connection (unacked deliveries return to the queue)."""
        await self._shutdown(None, None, None)

    async def _shutdown(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._started:
            return
        self._stopping = True
        try:
            await self._release_held()  # before the channel goes: the tags are valid only on it
        finally:
            await self._close_link(exc_type, exc, tb)

    # --- one link (BrokerLink hooks) ----------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await super()._run()
        finally:
            self._stopped.set()

    async def _prepare(self, connection: AbstractConnection) -> _Generation:
        """Declare, consume and verify on a fresh connection."""
        channel = await open_channel(connection, publisher_confirms=False)
        await channel.set_qos(prefetch_count=self._settings.prefetch)
        topology = await declare_topology(channel, self._names)
        queue = topology.intake_queue
        if self._queue != self._names.intake_queue:
            queue = await declare_partition_queue(channel, self._names, self._queue)
        generation = _Generation(
            channel=channel,
            queue=queue,
            inbox=asyncio.Queue(maxsize=self._settings.prefetch + _MARKER_SLOTS),
            prefetch=self._settings.prefetch,
        )
        connection.close_callbacks.add(generation.mark_lost)
        channel.close_callbacks.add(generation.mark_lost)
        # The broker cancels our consumer when the queue is deleted or fails over; the channel stays
        # open, so without this a dead consumer would look like a quiet queue.
        underlay = await channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(generation.mark_lost)
        generation.consumer_tag = await queue.consume(generation.on_message, no_ack=False)
        await self._verify(generation)
        return generation

    async def _serve(self, generation: _Generation) -> None:
        """Hand over commands until the link is lost, or, once stopped, keep it open for acks until close."""
        self._current = generation
        self._handing_off = False
        await self._set_consuming(True)
        self._came_up()
        log.debug("intake_consuming", queue=self._queue, consumer_tag=generation.consumer_tag)
        try:
            ended = await self._consume(generation)
            if self._tenure is not None:
                await self._end_tenure(generation, ended)
                return
            if ended in ("settled", "lost"):
                self._held.clear()  # their tags die with this link; its close returns them, in order
            if ended == "settled":
                # Stopping, not a loss. The channel's close, an RPC behind the copies' acks on it, gets them to the
                # broker first; a connection closed at once could drop acks still queued for its writer.
                await close_channel_quietly(generation.channel)
                return
            if ended == "stopped":
                # Keep the channel open for acks of handed-over commands until close() or loss.
                await self._set_consuming(False)
                self._stopped.set()
                await generation.lost
                return
        finally:
            self._current = None
            if self._consuming:
                await self._set_consuming(False)
        log.warning("broker_link_lost", link=self._link)

    async def _end_tenure(self, generation: _Generation, ended: _Ending) -> None:
        """A partition's consuming ended: fence it if it was ours, then give everything held back, in order."""
        assert self._tenure is not None
        if generation.owned:
            generation.owned = False
            await self._tenure.ended(link_lost=ended == "lost")
        # Their tags die with the channel: lost, the broker returns those deliveries itself; otherwise the close
        # below does.
        self._held.clear()
        if ended != "lost":
            # Closed, not cancelled: a cancel makes the next consumer in line the active one at once, and the
            # broker gives it the queue's newer ready commands before ours are back. The close returns every
            # delivery of the channel (the fenced sessions' commands and those never handed over) in delivery
            # order, in one step, before the next consumer is given anything. It goes after the fence's acks
            # on the same channel, so they reach the broker first.
            await close_channel_quietly(generation.channel)
            if self._stopping:
                self._stopped.set()
            else:
                self._renew = True  # subscribe again at once, at the back of the line
        if ended == "lost":
            log.warning("broker_link_lost", link=self._link)

    async def _cancel(self, generation: _Generation) -> None:
        """Cancel our consumer (the broker sends nothing more; what we hold stays ours until settled)."""
        if generation.consumer_tag is None or generation.cancelled:
            return
        try:
            await generation.queue.cancel(generation.consumer_tag)
        except (Exception, asyncio.CancelledError) as exc:
            mapped = broker_error(exc)
            if mapped is exc:
                raise
            log.warning("intake_cancel_failed", error=str(mapped))
        generation.cancelled = True

    async def _verify(self, generation: _Generation) -> None:
        """Check with the broker that our consumer really is registered on a live channel."""
        declared = await generation.channel.declare_queue(self._queue, passive=True)
        consumers = declared.declaration_result.consumer_count
        underlay = await generation.channel.get_underlay_channel()
        # aiormq drops a tag from ``consumers`` when the broker cancels it (not in its abstract type).
        registered = generation.consumer_tag in getattr(underlay, "consumers", {})
        if generation.lost.done() or not registered or not consumers:
            raise BrokerUnavailable(f"consumer on {self._queue!r} is not registered ({consumers=})")

    async def _consume(self, generation: _Generation) -> _Ending:
        while True:
            message = await generation.inbox.get()
            if generation.lost.done():
                # The channel is dead: its delivery tags are void and the broker redelivers them.
                return "lost"
            probe = message is not None and message.type == PROBE_TYPE
            if message is not None and probe:
                # Acked before anything is decided: a probe must never go back to the queue, where every
                # return counts toward the queue's x-delivery-limit (on RabbitMQ 3.x) and could dead-letter it.
                await self._probe(message)
            if self._tenure is not None and (self._stopping or self._handing_off):
                # Deliveries never handed over stay unsettled: the close returns them in order.
                return "handed_off"
            if message is not None and not generation.owned:
                generation.owned = True
                if self._tenure is not None and not await self._tenure.gained(message.timestamp):
                    generation.owned = False  # declined: nothing was loaded, so nothing to fence
                    return "handed_off"
                if generation.lost.done():
                    return "lost"
            if probe:
                continue
            if self._stopping:
                # Draining: what arrived but was never handed over goes back, until basic.cancel is answered.
                if message is not None:
                    await self._delivery(message).requeue()
                elif generation.cancelled:
                    return "stopped"
                elif generation.settled:
                    return "settled"
                continue
            if message is not None:
                await self._dispatch(message)

    async def _probe(self, message: AbstractIncomingMessage) -> None:
        await self._delivery(message).ack()
        if self._on_probe is not None:
            self._on_probe(message.timestamp)

    def _delivery(self, message: AbstractIncomingMessage) -> AmqpDelivery:
        generation = self._current
        return AmqpDelivery(
            message,
            dead_letters=self._dead_letters,
            metrics=self._metrics,
            hold=self._hold,
            lost=generation.mark_lost if generation is not None else None,
        )

    def _hold(self, delivery: AmqpDelivery) -> bool:
        """While draining, keep requeues back so they go to the broker in delivery order at close.

        Late arrivals the intake never handed over are requeued at once, but a session's older commands
        are requeued only after its in-flight command settles; the quorum queue redelivers in the order
        of return, so returning them as they come would reorder a session's commands for the next
        process. Bounded by the prefetch window.
        """
        if self._stopping or self._handing_off:
            self._held.append(delivery)
            return True
        return False

    async def _release_held(self) -> None:
        held, self._held = sorted(self._held, key=lambda d: d.delivery_tag or 0), []
        for delivery in held:
            await delivery.release()
        if held:
            log.info("intake_requeued_in_order", count=len(held))

    async def _dispatch(self, message: AbstractIncomingMessage) -> None:
        delivery = self._delivery(message)
        decoded = decode_command(message.body, max_bytes=self._settings.max_command_bytes)
        try:
            if isinstance(decoded, Rejection):
                await self._reject(message, delivery, decoded)
                return
            envelope = Envelope(
                decoded,
                delivery=delivery,
                reply_to=message.reply_to,
                correlation_id=message.correlation_id,
                trace=TraceContext.from_headers(message.headers),
                received_at=self._clock.monotonic(),
                redelivered=bool(message.redelivered),
            )
            await self._handler.submit(envelope)
        except Exception:
            # A bug in rejecting the command or in its handler must not stop the intake. Requeue:
            # x-delivery-limit ends a poison loop.
            command_type = decoded.command_type if isinstance(decoded, Rejection) else decoded.type
            log.exception("command_dispatch_failed", command_id=decoded.command_id, command_type=command_type)
            if not delivery.settled:
                await delivery.requeue()

    async def _reject(self, message: AbstractIncomingMessage, delivery: AmqpDelivery, rejection: Rejection) -> None:
        """Bad input: publish a ``rejected`` outcome, then dead-letter the original with the reason."""
        outcome = rejection_outcome(rejection, occurred_at=self._clock.now())
        settled = await settle(
            self._sink,
            delivery,
            outcome,
            deployment_id=None,
            reply_to=message.reply_to,
            correlation_id=message.correlation_id,
            trace=TraceContext.from_headers(message.headers),
        )
        if not settled:
            return  # no confirmed outcome, no dead-letter: left to a redelivery (bounded by x-delivery-limit)
        self._metrics.commands.settled(command_type_label(rejection.command_type), outcome.status, outcome.reason)
        log.info(
            "command_rejected",
            reason=rejection.reason,
            command_id=rejection.command_id,
            session_id=rejection.session_id,
            command_type=rejection.command_type,
        )
