"""One consuming generation of the intake, against the real broker: what it does with a delivery that
arrives once its link is lost, and with one past its prefetch bound."""

from __future__ import annotations

import asyncio

import aio_pika

from bridge.amqp.consumer import _Generation
from tests.amqp.conftest import Broker


async def queue_with(broker: Broker, suffix: str, *bodies: bytes) -> str:
    """A fresh queue holding ``bodies``, in order."""
    name = f"{broker.settings.intake_queue}.{suffix}"
    await broker.channel.declare_queue(name)
    broker.queues.append(name)
    for body in bodies:
        await broker.channel.default_exchange.publish(aio_pika.Message(body), routing_key=name)
    return name


async def generation_on(broker: Broker, queue: str, prefetch: int) -> _Generation:
    return _Generation(
        broker.channel, await broker.channel.get_queue(queue), inbox=asyncio.Queue(prefetch + 1), prefetch=prefetch
    )


async def bodies_in(broker: Broker, queue: str, count: int) -> list[bytes]:
    taken = await broker.take(queue, count)
    for message in taken:
        await message.ack()
    return [message.body for message in taken]


async def test_a_delivery_after_the_link_is_lost_is_neither_handed_on_nor_nacked(broker: Broker) -> None:
    # The link is being closed: the close gives every unsettled delivery back, in order. A nack now would put
    # this one back ahead of older ones still unsettled (and count toward the delivery limit).
    queue = await queue_with(broker, "lost", b"first", b"second")
    first, second = await broker.take(queue, 2)
    generation = await generation_on(broker, queue, prefetch=4)
    generation.mark_lost()
    await generation.on_message(second)
    assert generation.inbox.get_nowait() is None  # only the wake-up the loss itself queued
    assert generation.inbox.empty()
    assert not second.processed
    await first.channel.close()  # the close returns both, in their order
    assert await bodies_in(broker, queue, 2) == [b"first", b"second"]


async def test_a_delivery_past_the_prefetch_bound_goes_back_to_the_queue(broker: Broker) -> None:
    # The broker never sends more than the prefetch; if it did, the inbox must not grow past its bound.
    queue = await queue_with(broker, "overflow", b"held", b"extra")
    held, extra = await broker.take(queue, 2)
    generation = await generation_on(broker, queue, prefetch=1)
    await generation.on_message(held)
    await generation.on_message(extra)
    assert generation.inbox.get_nowait() is held
    assert generation.inbox.empty()
    assert extra.processed  # nacked with requeue
    await held.ack()
    assert await bodies_in(broker, queue, 1) == [b"extra"]
