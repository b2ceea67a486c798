"""Publishing into queues by name, and looking queues up: what the router and the fleet need of the broker.

:class:`QueueForwarder` holds one :class:`~bridge.amqp.connection.ReopeningConnection` of its own: a
confirm channel for copies and probes (the default exchange routes by queue name), a channel for passive
declares (a missing queue closes its channel, never the confirm channel), and a consumer on the presence
queue, whose consumer count is the number of replicas (docs/scaling.md).

Errors are mapped here: a publish that is not confirmed, returned unroutable or nacked raises
:class:`~bridge.errors.BrokerUnavailable` (retryable: the caller breaks its link, so every unsettled
delivery goes back to its queue in order); anything else goes through
:func:`~bridge.amqp.connection.broker_error`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, NoReturn

import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from bridge.amqp.confirm import publish_confirmed
from bridge.amqp.connection import ReopeningConnection, broker_error, open_channel
from bridge.amqp.messages import Outbound
from bridge.amqp.topology import PRESENCE_QUEUE_ARGUMENTS
from bridge.errors import BrokerUnavailable
from bridge.partition.layout import MAX_PARTITIONS, PROBE_TYPE

__all__ = ["QueueForwarder", "QueueStats"]

#: A channel for confirmed publishes (copies and probes), or one for passive declares (a missing queue
#: closes its channel, never the confirm channel).
_Purpose = Literal["confirm", "inspect"]


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What a passive declare tells of a queue."""

    messages: int
    consumers: int


class QueueForwarder:
    """Publish into queues with confirms, probe them, inspect them, and hold this replica's presence.

    The caller owns ``connection`` and closes it after this (:meth:`close` first).
    """

    def __init__(self, connection: ReopeningConnection, *, confirm_timeout_s: float) -> None:
        self._connection = connection
        self._confirm_timeout_s = confirm_timeout_s
        self._channels: dict[_Purpose, AbstractChannel] = {}
        self._held: dict[str, AbstractChannel] = {}
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        """Close the channels (the connection stays the caller's)."""
        for channel in (*self._channels.values(), *self._held.values()):
            if channel is not None and not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()
        self._channels.clear()
        self._held.clear()

    async def forward(self, message: Outbound, queue: str) -> None:
        """Publish ``message`` into ``queue``; return once the broker confirmed it.

        Raises:
            BrokerUnavailable: not confirmed (nack, returned unroutable because the queue is gone, or the
                connection lost); PublishTimeout: no confirm in time. Both retryable.
        """
        channel = await self._channel("confirm")
        try:
            routed = await publish_confirmed(
                channel,
                message,
                exchange="",
                routing_key=queue,
                timeout_s=self._confirm_timeout_s,
                what=f"queue {queue!r}",
            )
        except (Exception, asyncio.CancelledError) as exc:
            self._raise_mapped(exc, queue)
        if not routed:
            raise BrokerUnavailable(f"queue {queue!r} is gone (publish returned unroutable)")

    async def probe(self, queue: str, *, replica: str) -> None:
        """Publish one probe into ``queue``, for its active consumer to ack.

        It never expires: the queues dead-letter what expires, and probes must never reach the dead-letter
        queue, where operators look for bad commands. The active consumer acks each one, so they gather only
        while a queue has no consumer at all, a few per interval, and the next consumer drops them.
        """
        probe = Outbound.of(replica.encode(), message_type=PROBE_TYPE, timestamp=datetime.now(UTC), persistent=False)
        await self.forward(probe, queue)

    async def inspect(self, queue: str) -> QueueStats | None:
        """Messages ready and consumers of ``queue``; ``None`` when it does not exist."""
        channel = await self._channel("inspect")
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None  # the broker closed the channel; the next call opens another
        except (Exception, asyncio.CancelledError) as exc:
            self._raise_mapped(exc, queue)
        result = declared.declaration_result
        return QueueStats(messages=result.message_count or 0, consumers=result.consumer_count or 0)

    async def count(self, name: Callable[[int], str], *, start: int = 0) -> int:
        """The first ``n >= start`` for which queue ``name(n)`` does not exist (looking no further than
        :data:`~bridge.partition.layout.MAX_PARTITIONS`): with ``start=0``, how many of ``name(0)``,
        ``name(1)``, ... exist before the first gap."""
        found = start
        while found <= MAX_PARTITIONS and await self.inspect(name(found)) is not None:
            found += 1
        return found

    async def hold(self, queue: str) -> None:
        """Keep one consumer of this replica on ``queue`` (declared here; presence and hunger queues hold no
        messages, only consumers to count); a no-op while it is there. Call it again after a broker loss:
        the consumer went with the connection."""
        channel = self._held.get(queue)
        if channel is not None and not channel.is_closed:
            return
        try:
            channel = await open_channel(await self._connection.get(), publisher_confirms=False)
            declared = await channel.declare_queue(queue, durable=True, arguments=PRESENCE_QUEUE_ARGUMENTS)
            await declared.consume(_refuse, no_ack=False)
        except (Exception, asyncio.CancelledError) as exc:
            self._raise_mapped(exc, queue)
        self._held[queue] = channel

    async def let_go(self, queue: str) -> None:
        """Cancel this replica's consumer on ``queue`` (closing its channel), if it holds one."""
        channel = self._held.pop(queue, None)
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _channel(self, purpose: _Purpose) -> AbstractChannel:
        """The channel for ``purpose``, opened again after it (or the connection) closed."""
        channel = self._channels.get(purpose)
        if channel is not None and not channel.is_closed:
            return channel
        publisher_confirms = purpose == "confirm"
        async with self._lock:
            channel = self._channels.get(purpose)
            if channel is None or channel.is_closed:
                connection = await self._connection.get()
                channel = await open_channel(
                    connection, publisher_confirms=publisher_confirms, on_return_raises=publisher_confirms
                )
                self._channels[purpose] = channel
            return channel

    @staticmethod
    def _raise_mapped(exc: BaseException, what: str) -> NoReturn:
        mapped = broker_error(exc)
        if mapped is exc:
            raise exc
        raise type(mapped)(f"{what}: {mapped}") from exc


async def _refuse(message: AbstractIncomingMessage) -> None:
    """Nothing is ever published to the presence queue; should something be, it is dropped."""
    await message.reject(requeue=False)
