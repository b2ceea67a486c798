"""Micro-benchmark, not in the suite: the CPU of consuming one delivery and acking it, three ways.

- ``intake``: what :class:`bridge.amqp.consumer.CommandIntake` does: aio-pika's ``Queue.consume`` with a
  coroutine callback (aiormq runs a task per delivery, aio-pika's wrapper a second one for the callback,
  and builds an ``IncomingMessage``), acked with aiormq's ``basic_ack`` (``wait=False``) as
  :class:`bridge.amqp.delivery.AmqpDelivery` acks;
- ``one task``: aiormq's ``basic_consume`` with a callback that builds aio-pika's message in aiormq's
  task (no second task), acked the same way;
- ``no message object``: aiormq's ``basic_consume``, aiormq's delivered message as it is, acked the same way.

Each callback puts what it got into an inbox that one loop empties, acking each, as the intake does. Each
repetition fills a classic queue with ``--messages`` small messages, then times consuming all of them with
``--prefetch`` unacked at most, on uvloop; the ways alternate, repetition by repetition. Prints µs of this
process's CPU per delivery, median [min–max], and each way's ratio to the intake's. The filling is not
counted, nor is the broker's CPU (the same for all).

    python -m bench.micro_consume [--reps 9] [--messages 20000] [--prefetch 256]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aiormq.abc import ConsumerCallback, DeliveredMessage

from bench.common import AMQP_URL, micro_main, unique_prefix
from bridge.amqp.tools import delete_names

BODY = b'{"type":"message.send","text":"hello"}'

#: What a consumer callback put in the inbox: the delivery tag to ack, and the message object it built.
Inbox = asyncio.Queue[tuple[int, object]]
#: Starts consuming ``queue`` into the inbox; returns the consumer tag.
Consume = Callable[[AbstractChannel, AbstractQueue, Inbox], Awaitable[str]]


async def _intake(channel: AbstractChannel, queue: AbstractQueue, inbox: Inbox) -> str:
    async def on_message(message: AbstractIncomingMessage) -> None:
        assert message.delivery_tag is not None
        inbox.put_nowait((message.delivery_tag, message))

    return await queue.consume(on_message, no_ack=False)


async def _basic_consume(channel: AbstractChannel, queue: AbstractQueue, on_delivered: ConsumerCallback) -> str:
    underlay = await channel.get_underlay_channel()
    consuming = await underlay.basic_consume(queue.name, on_delivered, no_ack=False)
    assert consuming.consumer_tag is not None
    return consuming.consumer_tag


async def _one_task(channel: AbstractChannel, queue: AbstractQueue, inbox: Inbox) -> str:
    async def on_delivered(delivered: DeliveredMessage) -> None:
        assert delivered.delivery_tag is not None
        inbox.put_nowait((delivered.delivery_tag, aio_pika.IncomingMessage(delivered, no_ack=False)))

    return await _basic_consume(channel, queue, on_delivered)


async def _no_message_object(channel: AbstractChannel, queue: AbstractQueue, inbox: Inbox) -> str:
    async def on_delivered(delivered: DeliveredMessage) -> None:
        assert delivered.delivery_tag is not None
        inbox.put_nowait((delivered.delivery_tag, delivered))

    return await _basic_consume(channel, queue, on_delivered)


WAYS: dict[str, Consume] = {"intake": _intake, "one task": _one_task, "no message object": _no_message_object}


async def _fill(channel: AbstractChannel, queue: str, count: int) -> None:
    sending = asyncio.Semaphore(256)

    async def one() -> None:
        async with sending:
            await channel.default_exchange.publish(aio_pika.Message(BODY), routing_key=queue)

    await asyncio.gather(*(one() for _ in range(count)))


async def _cpu_us_per_delivery(channel: AbstractChannel, queue: AbstractQueue, consume: Consume, count: int) -> float:
    inbox: Inbox = asyncio.Queue(maxsize=count)
    start = time.process_time()
    tag = await consume(channel, queue, inbox)
    underlay = await channel.get_underlay_channel()
    for _ in range(count):
        delivery_tag, _message = await inbox.get()
        await underlay.basic_ack(delivery_tag, wait=False)
    elapsed = time.process_time() - start
    await queue.cancel(tag)
    return elapsed / count * 1e6


async def _run(reps: int, count: int, prefetch: int) -> dict[str, list[float]]:
    name = f"{unique_prefix('micro_consume')}.q"
    samples: dict[str, list[float]] = {way: [] for way in WAYS}
    connection = await aio_pika.connect(AMQP_URL)
    try:
        filler = await connection.channel(publisher_confirms=True)
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.declare_queue(name, durable=True)
        for consume in WAYS.values():  # warm up
            await _fill(filler, name, 500)
            await _cpu_us_per_delivery(channel, queue, consume, 500)
        for _ in range(reps):
            for way, consume in WAYS.items():
                await _fill(filler, name, count)
                samples[way].append(await _cpu_us_per_delivery(channel, queue, consume, count))
    finally:
        await connection.close()
        await delete_names(AMQP_URL, queues=(name,))
    return samples


def main() -> None:
    """``python -m bench.micro_consume``."""
    micro_main(
        __doc__ or "", {"reps": 9, "messages": 20_000, "prefetch": 256}, _run, reference="intake", unit="µs/delivery"
    )


if __name__ == "__main__":
    main()
