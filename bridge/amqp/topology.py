"""The broker topology the bridge needs, declared idempotently at start and after every reconnect.

::

    publishers --(routing key = command type)--> [genesys.commands]  topic, durable
                                                      | binding "#"
                                                      v
                                       (genesys.bridge.commands)  quorum, x-delivery-limit, single active consumer
                                           | the router: hash(session_id) mod P
                                           v
                                       (genesys.bridge.commands.p<N>)  one per partition, same arguments
                                           | delivery limit exceeded (broker) or
                                           | rejected by the bridge (copy + headers)
                                           v
                                       (genesys.bridge.dead-letter)  quorum

    bridge --(routing key = <event type>.<deployment id>)--> [genesys.events]  topic, durable

Declaring with the same arguments is a no-op; declaring an existing queue with *different* arguments
fails with ``PRECONDITION_FAILED``, which :func:`bridge.amqp.connection.broker_error` maps to a final
``BrokerError``: the operator must delete the old queue (see docs/rabbitmq.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from bridge.config import Settings

__all__ = [
    "DEAD_LETTER_QUEUE_ARGUMENTS",
    "PRESENCE_QUEUE_ARGUMENTS",
    "Topology",
    "TopologyNames",
    "declare_partition_queue",
    "declare_topology",
    "intake_queue_arguments",
]

#: The DLQ is a quorum queue too: it holds the evidence of bad input, so it is replicated and durable.
#: No delivery limit of ours and no further dead-lettering: nothing consumes it automatically. (RabbitMQ 4.0-4.2
#: give quorum queues a default limit of 20 returned deliveries; docs/rabbitmq.md says how to lift it.)
DEAD_LETTER_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}


@dataclass(frozen=True, slots=True)
class TopologyNames:
    """Names and limits of the topology. Built from :class:`~bridge.config.Settings` in production."""

    command_exchange: str
    intake_queue: str
    event_exchange: str
    dead_letter_queue: str
    delivery_limit: int

    @classmethod
    def from_settings(cls, settings: Settings) -> TopologyNames:
        """Take the names from ``settings`` (``BRIDGE_COMMAND_EXCHANGE`` and friends)."""
        return cls(
            command_exchange=settings.command_exchange,
            intake_queue=settings.intake_queue,
            event_exchange=settings.event_exchange,
            dead_letter_queue=settings.dead_letter_queue,
            delivery_limit=settings.delivery_limit,
        )


def intake_queue_arguments(names: TopologyNames) -> dict[str, Any]:
    """Arguments of the intake queue, and of every partition queue (docs/scaling.md).

    - ``x-single-active-consumer``: every replica consumes, the broker delivers to one at a time (the
      router on the intake queue, the owner on a partition queue) and hands over, in order, when it goes.

    - ``x-delivery-limit``: after this many *re*deliveries the broker dead-letters a command itself
      (poison messages, e.g. a command that crashes the bridge every time, cannot loop forever).
    - ``x-dead-letter-exchange`` ``""`` plus ``x-dead-letter-routing-key`` = DLQ name: the default
      exchange routes dead letters straight to the DLQ, no extra exchange needed.
    - ``x-dead-letter-strategy: at-least-once`` (RabbitMQ >= 3.10, quorum only): the broker keeps a
      dead-lettered message in the intake queue until the DLQ confirmed it, so a command that hit the
      delivery limit is never lost on the way. It requires ``x-overflow: reject-publish`` (with the
      default ``drop-head`` the broker silently falls back to at-most-once). The intake queue has no
      length limit, so ``reject-publish`` only matters if an operator adds one by policy; then
      publishers get nacks instead of old commands being dropped, which is what we want anyway.
    """
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": names.delivery_limit,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": names.dead_letter_queue,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-single-active-consumer": True,
    }


#: The presence queue holds no message: every replica keeps one consumer on it, so its consumer count is
#: the number of replicas. (On RabbitMQ 3.x a single-active-consumer queue counts only its active consumer,
#: so the partition queues cannot tell.) Classic: nothing in it needs replicating.
PRESENCE_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "classic"}


async def declare_partition_queue(channel: AbstractChannel, names: TopologyNames, queue: str) -> AbstractQueue:
    """Declare one partition queue (``<intake>.p<N>``): the intake's arguments, no binding (the router
    publishes into it through the default exchange). Idempotent; errors as :func:`declare_topology`."""
    return await channel.declare_queue(queue, durable=True, arguments=intake_queue_arguments(names))


@dataclass(frozen=True, slots=True)
class Topology:
    """Handles on the declared entities, bound to the channel that declared them."""

    command_exchange: AbstractExchange
    intake_queue: AbstractQueue
    event_exchange: AbstractExchange
    dead_letter_queue: AbstractQueue


async def declare_topology(channel: AbstractChannel, names: Settings | TopologyNames) -> Topology:
    """Declare every exchange, queue and binding. Idempotent; call after every (re)connect.

    The DLQ is declared first, so it exists before anything can be dead-lettered to it.

    Raises:
        aio-pika/aiormq errors as they come: the caller maps them with
        :func:`bridge.amqp.connection.broker_error` (``PRECONDITION_FAILED`` is final).
    """
    if isinstance(names, Settings):
        names = TopologyNames.from_settings(names)
    dead_letter_queue = await channel.declare_queue(
        names.dead_letter_queue, durable=True, arguments=DEAD_LETTER_QUEUE_ARGUMENTS
    )
    command_exchange = await channel.declare_exchange(names.command_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    intake_queue = await channel.declare_queue(
        names.intake_queue, durable=True, arguments=intake_queue_arguments(names)
    )
    # Publishers route commands by command type; the bridge takes every type.
    await intake_queue.bind(command_exchange, routing_key="#")
    event_exchange = await channel.declare_exchange(names.event_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    return Topology(
        command_exchange=command_exchange,
        intake_queue=intake_queue,
        event_exchange=event_exchange,
        dead_letter_queue=dead_letter_queue,
    )
