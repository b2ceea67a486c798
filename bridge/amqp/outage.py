"""The publisher's outage buffer: events waiting for the broker, in order, bounded (back-pressure).

:class:`bridge.amqp.publisher.AmqpEventPublisher` puts an event here when the broker is away (or the
link broke under its publish) and its ``publish`` call then waits on :attr:`PendingEvent.done`. After a
reconnect the publisher takes the events out in windows (:meth:`OutageBuffer.take`), publishes them,
puts the unconfirmed ones back at the head (:meth:`OutageBuffer.put_back`) and settles the confirmed
ones, so buffered events go out before newer ones and in their original order.

Bounded at ``publish_buffer_size``: a full buffer makes :meth:`OutageBuffer.reserve` wait for room
(block, never drop). The ``publish_buffer`` gauge follows the count of buffered, unconfirmed events.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import Gauge

from bridge.amqp.messages import Outbound
from bridge.errors import BrokerError

__all__ = ["OutageBuffer", "PendingEvent"]


@dataclass(eq=False, slots=True)
class PendingEvent:
    """One event being published: its message, destinations, and which of them are confirmed."""

    message: Outbound
    routing_key: str
    reply_to: str | None
    event_type: str
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    needs_topic: bool = True  # a publish that broke half-way resends only what was not confirmed
    needs_reply: bool = True
    confirmed: bool = False


class OutageBuffer:
    """A FIFO of at most ``size`` :class:`PendingEvent`, with a gauge of its length.

    The owner calls :meth:`reserve` before :meth:`append` (or :meth:`release` if it then decides not to
    buffer), and ends every buffered event with :meth:`settle` (confirmed), :meth:`fail` (that event cannot
    be published) or :meth:`fail_all` (the publisher closed).
    """

    def __init__(self, size: int, gauge: Gauge) -> None:
        self._backlog: deque[PendingEvent] = deque()
        self._space = asyncio.Semaphore(size)
        self._gauge = gauge
        self._buffered = 0  # events accepted into the buffer and not yet confirmed

    def __bool__(self) -> bool:
        """Whether events wait in the backlog (taken-out windows do not count)."""
        return bool(self._backlog)

    @property
    def buffered(self) -> int:
        """Events accepted and not yet settled or failed (including a window being flushed)."""
        return self._buffered

    async def reserve(self) -> None:
        """Wait for room for one event (back-pressure: never drop)."""
        await self._space.acquire()

    def release(self) -> None:
        """Give back a reservation that was not used."""
        self._space.release()

    def append(self, pending: PendingEvent) -> None:
        """Buffer ``pending`` on a reservation made with :meth:`reserve`."""
        self._backlog.append(pending)
        self._buffered += 1
        self._gauge.set(self._buffered)

    def take(self, limit: int) -> list[PendingEvent]:
        """Take the oldest ``limit`` events out (to publish them); they stay counted until settled."""
        return [self._backlog.popleft() for _ in range(min(len(self._backlog), limit))]

    def put_back(self, pending: list[PendingEvent]) -> None:
        """Return events taken out but not confirmed to the head, in their order."""
        self._backlog.extendleft(reversed(pending))

    def settle(self, pending: PendingEvent) -> None:
        """``pending`` (taken out) was confirmed: wake its publisher and free its room."""
        if not pending.done.done():
            pending.done.set_result(None)
        self._space.release()
        self._buffered -= 1
        self._gauge.set(self._buffered)

    def fail(self, pending: PendingEvent, error: Exception) -> None:
        """``pending`` (taken out) cannot be published, for a reason of its own: its publisher gets
        ``error``, and its room is freed."""
        if not pending.done.done():
            pending.done.set_exception(error)
            pending.done.exception()  # retrieved: a caller that gave up must not leave a loop warning
        self._space.release()
        self._buffered -= 1
        self._gauge.set(self._buffered)

    def fail_all(self, error: BrokerError) -> None:
        """Fail every event in the backlog with ``error`` (the publisher closed) and free their room."""
        while self._backlog:
            self.fail(self._backlog.popleft(), error)
