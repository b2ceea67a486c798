"""Micro-benchmark, not in the suite: the CPU of one confirmed publish, three ways, on one channel.

- ``aio-pika``: ``Exchange.publish`` with ``mandatory`` (the raw library, the reference);
- ``in caller``: aiormq's ``basic_publish`` awaited by the caller's own task under its deadline (how
  :func:`bridge.amqp.confirm.publish_confirmed` published before its publishes got a task of their own);
- ``publish_confirmed``: the daemon's one confirmed publish, each publish in a task of its own.

Each repetition publishes ``--publishes`` small persistent messages to one classic queue, ``--in-flight`` at
a time, on uvloop; the three ways alternate, repetition by repetition, so they see the same machine. Prints
µs of this process's CPU per publish, median [min–max], and each way's ratio to the in-caller way. The
broker's CPU is not counted (it does the same work for all three).

    python -m bench.micro_publish [--reps 5] [--publishes 20000] [--in-flight 64]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import cast

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel

from bench.common import AMQP_URL, micro_main, unique_prefix
from bridge.amqp.confirm import publish_confirmed
from bridge.amqp.messages import Outbound
from bridge.amqp.tools import delete_names

BODY = b'{"type":"message.send","text":"hello"}'
TIMEOUT_S = 30.0

Publish = Callable[[AbstractChannel, str], Awaitable[object]]


async def _aio_pika(channel: AbstractChannel, queue: str) -> object:
    return await channel.default_exchange.publish(
        aio_pika.Message(BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue, mandatory=True
    )


async def _in_caller(channel: AbstractChannel, queue: str) -> object:
    underlay = cast(aiormq.Channel, await channel.get_underlay_channel())
    message = Outbound.of(BODY)
    async with asyncio.timeout(TIMEOUT_S):
        return await underlay.basic_publish(
            message.body, routing_key=queue, properties=message.properties, mandatory=True, wait=True
        )


async def _confirmed(channel: AbstractChannel, queue: str) -> object:
    return await publish_confirmed(
        channel, Outbound.of(BODY), exchange="", routing_key=queue, timeout_s=TIMEOUT_S, what=queue
    )


WAYS: dict[str, Publish] = {"aio-pika": _aio_pika, "in caller": _in_caller, "publish_confirmed": _confirmed}


async def _cpu_us_per_publish(channel: AbstractChannel, queue: str, publish: Publish, count: int, width: int) -> float:
    slots = asyncio.Semaphore(width)

    async def one() -> None:
        async with slots:
            await publish(channel, queue)

    start = time.process_time()
    await asyncio.gather(*(one() for _ in range(count)))
    return (time.process_time() - start) / count * 1e6


async def _run(reps: int, count: int, width: int) -> dict[str, list[float]]:
    queue = f"{unique_prefix('micro_publish')}.q"
    samples: dict[str, list[float]] = {name: [] for name in WAYS}
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=False)
        declared = await channel.declare_queue(queue, durable=True)
        for publish in WAYS.values():  # warm up
            await _cpu_us_per_publish(channel, queue, publish, 500, width)
        await declared.purge()
        for _ in range(reps):
            for name, publish in WAYS.items():
                samples[name].append(await _cpu_us_per_publish(channel, queue, publish, count, width))
                await declared.purge()
    finally:
        await connection.close()
        await delete_names(AMQP_URL, queues=(queue,))
    return samples


def main() -> None:
    """``python -m bench.micro_publish``."""
    micro_main(
        __doc__ or "", {"reps": 5, "publishes": 20_000, "in-flight": 64}, _run, reference="in caller", unit="µs/publish"
    )


if __name__ == "__main__":
    main()
