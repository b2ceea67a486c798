"""The router: moves each valid command from the intake queue into its session's partition queue.

It is the :class:`~bridge.ports.CommandHandler` of the intake queue's consumer, which every replica runs
and the broker makes active on one replica at a time (single active consumer). That consumer has decoded
and validated the command already: bad input was rejected and dead-lettered there, exactly as a single
process did. The router publishes a copy into ``<intake>.p<N>`` (N = :func:`partition_of` the session),
waits for the broker's confirm, and only then acks the original.

Copies of different sessions' commands are in flight together, up to the intake's prefetch window; one
session's commands form a *lane* and are copied one at a time, in delivery order, each only once the one
before it was confirmed. So a partition queue receives each session's commands in the order they were
published, and a copy never lands before its predecessor's. A copy that is not confirmed stops its lane
and breaks the intake's link (:meth:`AmqpDelivery.break_link`): the broker gets every unsettled delivery
back, in order, and the next router starts from there (docs/scaling.md, "Ordering"). Lanes are keyed by
the consumer a delivery came to as well (a new one for every link), so the redeliveries a broken link
brings never queue behind the lane that failed.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import TracebackType

import structlog

from bridge.amqp.delivery import AmqpDelivery
from bridge.amqp.forwarder import QueueForwarder
from bridge.amqp.messages import copy_message, origin_headers
from bridge.errors import BrokerError
from bridge.observability.metrics import Metrics
from bridge.partition.layout import partition_of, partition_queue
from bridge.ports import Envelope
from bridge.tasks import TaskGroup

__all__ = ["PartitionRouter", "observe_lag"]

log = structlog.get_logger(__name__)


def observe_lag(metrics: Metrics, published_at: datetime | None) -> None:
    """Set the router lag from a routed message's publish time (messages without one tell nothing)."""
    if published_at is not None:
        if published_at.tzinfo is None:
            published_at = published_at.replace(tzinfo=UTC)  # AMQP timestamps are seconds since the epoch
        metrics.router_lag.set(max(0.0, (datetime.now(UTC) - published_at).total_seconds()))


class PartitionRouter:
    """Forwards commands into partition queues. Implements :class:`bridge.ports.CommandHandler`.

    Use as an async context manager: it owns the copies in flight. ``submit`` returns at once; the copy
    acks the delivery after the confirm, or breaks the intake's link when it cannot be confirmed. The
    intake awaits :meth:`drain` when it stops (its ``settle``), before it gives the queue up.
    """

    def __init__(self, forwarder: QueueForwarder, *, intake_queue: str, partitions: int, metrics: Metrics) -> None:
        self._forwarder = forwarder
        self._intake_queue = intake_queue
        self._partitions = partitions
        self._metrics = metrics
        self._tasks = TaskGroup()
        # The newest copy of each lane, (consumer tag, session) -> its task. Bounded by the intake's prefetch: every
        # entry holds an unsettled delivery. An entry goes when its copy is done and no newer one replaced it.
        self._lanes: dict[tuple[str | None, str], asyncio.Task[bool]] = {}

    async def __aenter__(self) -> PartitionRouter:
        await self._tasks.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._tasks.__aexit__(exc_type, exc, tb)

    async def submit(self, envelope: Envelope) -> None:
        """Start copying ``envelope``'s message into its partition queue, behind its session's earlier ones."""
        delivery = envelope.delivery
        if not isinstance(delivery, AmqpDelivery):
            raise TypeError("the router forwards broker deliveries only")
        lane = (delivery.consumer_tag, envelope.command.session_id)
        copy = self._tasks.create_task(self._copy(envelope, delivery, after=self._lanes.get(lane)))
        self._lanes[lane] = copy
        copy.add_done_callback(lambda done: self._lanes.pop(lane) if self._lanes.get(lane) is done else None)

    @property
    def busy(self) -> bool:
        """True while a copy is in flight."""
        return bool(self._lanes)

    async def drain(self) -> None:
        """Wait until every copy in flight is acked or has given its delivery back. Call once no ``submit`` comes."""
        while self._lanes:
            await asyncio.wait(list(self._lanes.values()))

    async def _copy(self, envelope: Envelope, delivery: AmqpDelivery, *, after: asyncio.Task[bool] | None) -> bool:
        """Copy one command once the lane's previous copy is done; True once it is confirmed and acked.

        Never raises: a copy that fails, for whatever reason, breaks the link (and so stops its lane)."""
        if after is not None:
            await asyncio.wait({after})
            if after.cancelled() or not after.result():
                return False  # an earlier command of the session was not copied: the link break gives both back
        if delivery.void:
            return False  # its link is gone: the broker redelivers it, and a copy now would only be a duplicate
        try:
            message = delivery.message
            queue = partition_queue(self._intake_queue, partition_of(envelope.command.session_id, self._partitions))
            # The copy remembers where it was published, for a dead-letter of it and for `dlq replay`.
            headers = {**(message.headers or {}), **origin_headers(message)}
            await self._forwarder.forward(copy_message(message, headers=headers), queue)
            await delivery.ack()
        except BrokerError as exc:
            log.warning("command_forward_failed", command_id=envelope.command.command_id, error=str(exc))
            delivery.break_link()
            return False
        except Exception:
            # A bug here must not stop the router: give the window back in order, as for a broker error.
            log.exception("command_forward_failed", command_id=envelope.command.command_id)
            delivery.break_link()
            return False
        self._metrics.router_routed.inc()
        observe_lag(self._metrics, message.timestamp)
        return True
