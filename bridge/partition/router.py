"""The router: moves each valid command from the intake queue into its session's partition queue.

It is the :class:`~bridge.ports.CommandHandler` of the intake queue's consumer, which every replica runs
and the broker makes active on one replica at a time (single active consumer). That consumer has decoded
and validated the command already: bad input was rejected and dead-lettered there, exactly as a single
process did. The router publishes a copy into ``<intake>.p<N>`` (N = :func:`partition_of` the session),
waits for the broker's confirm, and only then acks the original. Commands are taken one at a time in
delivery order, so each partition queue receives a session's commands in the order they were published.
A publish that is not confirmed raises, and the consumer gives every unsettled delivery back in order
(docs/scaling.md, "Ordering").
"""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.amqp.delivery import AmqpDelivery
from bridge.amqp.forwarder import QueueForwarder
from bridge.amqp.messages import copy_message, origin_headers
from bridge.observability.metrics import Metrics
from bridge.partition.layout import partition_of, partition_queue
from bridge.ports import Envelope

__all__ = ["PartitionRouter", "observe_lag"]


def observe_lag(metrics: Metrics, published_at: datetime | None) -> None:
    """Set the router lag from a routed message's publish time (messages without one tell nothing)."""
    if published_at is not None:
        if published_at.tzinfo is None:
            published_at = published_at.replace(tzinfo=UTC)  # AMQP timestamps are seconds since the epoch
        metrics.router_lag.set(max(0.0, (datetime.now(UTC) - published_at).total_seconds()))


class PartitionRouter:
    """Forwards commands into partition queues. Implements :class:`bridge.ports.CommandHandler`.

    ``submit`` settles the delivery itself (ack after the confirm) or raises ``BrokerError``, never anything
    else for a broker problem: the intake then breaks its link so nothing is reordered.
    """

    def __init__(self, forwarder: QueueForwarder, *, intake_queue: str, partitions: int, metrics: Metrics) -> None:
        self._forwarder = forwarder
        self._intake_queue = intake_queue
        self._partitions = partitions
        self._metrics = metrics

    async def submit(self, envelope: Envelope) -> None:
        """Publish ``envelope``'s message into its partition queue, then ack it."""
        delivery = envelope.delivery
        if not isinstance(delivery, AmqpDelivery):
            raise TypeError("the router forwards broker deliveries only")
        message = delivery.message
        queue = partition_queue(self._intake_queue, partition_of(envelope.command.session_id, self._partitions))
        # The copy remembers where it was published, for a dead-letter of it and for `dlq replay`.
        headers = {**(message.headers or {}), **origin_headers(message)}
        await self._forwarder.forward(copy_message(message, headers=headers), queue)
        await delivery.ack()
        self._metrics.router_routed.inc()
        observe_lag(self._metrics, message.timestamp)
