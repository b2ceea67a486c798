"""The topology: declared with the documented arguments, idempotent, and the delivery limit works."""

from __future__ import annotations

import asyncio
import os
import sys

import aio_pika
import aiormq.exceptions
import pytest
from aio_pika.abc import AbstractIncomingMessage

from bridge.amqp.connection import broker_error
from bridge.amqp.tools import delete_names
from bridge.amqp.topology import DEAD_LETTER_QUEUE_ARGUMENTS, TopologyNames, declare_topology, intake_queue_arguments
from bridge.config import Settings
from bridge.errors import BrokerError, is_retryable
from bridge.partition.layout import journal_stream_of, partition_queue
from tests.amqp.conftest import Broker, command
from tests.conftest import BrokerNames


async def test_declare_is_idempotent_and_uses_the_documented_arguments(broker: Broker, settings: Settings) -> None:
    # Declared once by the fixture; again here (a reconnect does exactly this).
    topology = await declare_topology(broker.channel, settings)
    await declare_topology(broker.channel, TopologyNames.from_settings(settings))

    # The broker accepts a re-declare only with identical arguments, so these prove what exists.
    names = TopologyNames.from_settings(settings)
    args = intake_queue_arguments(names)
    assert args == {
        "x-queue-type": "quorum",
        "x-delivery-limit": settings.delivery_limit,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": settings.dead_letter_queue,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-single-active-consumer": True,
    }
    await broker.channel.declare_queue(settings.intake_queue, durable=True, arguments=args)
    await broker.channel.declare_queue(settings.dead_letter_queue, durable=True, arguments=DEAD_LETTER_QUEUE_ARGUMENTS)
    for exchange in (settings.command_exchange, settings.event_exchange):
        await broker.channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    assert topology.intake_queue.name == settings.intake_queue


async def test_other_arguments_are_a_final_error(broker: Broker, settings: Settings) -> None:
    channel = await broker.connection.channel()
    changed = TopologyNames.from_settings(settings.model_copy(update={"delivery_limit": settings.delivery_limit + 1}))
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as raised:
        await declare_topology(channel, changed)
    mapped = broker_error(raised.value)
    assert isinstance(mapped, BrokerError)
    assert not is_retryable(mapped)


async def test_commands_of_any_type_reach_the_intake_queue(broker: Broker, settings: Settings) -> None:
    for body in (command(), command(type="session.end"), b"not even json"):
        await broker.send_command(body)
    intake = await broker.consume(settings.intake_queue)
    assert len(await intake.take(3)) == 3


async def test_delivery_limit_dead_letters_a_command_after_n_redeliveries(broker: Broker, settings: Settings) -> None:
    deliveries: list[AbstractIncomingMessage] = []
    dead = await broker.consume(settings.dead_letter_queue)
    channel = await broker.connection.channel()

    async def always_requeue(message: AbstractIncomingMessage) -> None:
        deliveries.append(message)
        await message.nack(requeue=True)

    queue = await channel.get_queue(settings.intake_queue)
    await queue.consume(always_requeue)
    await broker.send_command(command(command_id="poison"))

    [message] = await dead.take(1)
    assert message.headers["x-first-death-reason"] == "delivery_limit"
    assert b'"poison"' in message.body
    # First delivery plus ``delivery_limit`` redeliveries, then the broker gives up on it.
    assert len(deliveries) == settings.delivery_limit + 1
    assert [m.redelivered for m in deliveries] == [False] + [True] * settings.delivery_limit


async def test_declare_ahead_creates_what_the_bridge_would_so_services_can_publish_first(
    settings: Settings, broker_names: BrokerNames
) -> None:
    """``genesys-bridge declare`` as a GitOps job runs it: a real process, before any bridge exists."""
    env = {
        **os.environ,
        "BRIDGE_AMQP_URL": settings.amqp_url.get_secret_value(),
        "BRIDGE_COMMAND_EXCHANGE": settings.command_exchange,
        "BRIDGE_INTAKE_QUEUE": settings.intake_queue,
        "BRIDGE_EVENT_EXCHANGE": settings.event_exchange,
        "BRIDGE_DEAD_LETTER_QUEUE": settings.dead_letter_queue,
        "BRIDGE_JOURNAL_STREAM": broker_names.journal_stream,
        "BRIDGE_PARTITIONS": "3",
    }
    partition_queues = [partition_queue(settings.intake_queue, n) for n in range(3)]
    streams = [journal_stream_of(broker_names.journal_stream, n) for n in range(3)]
    try:
        for _ in range(2):  # idempotent: a second run changes nothing and still succeeds
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge", "declare", env=env, stdout=asyncio.subprocess.PIPE
            )
            out, _err = await process.communicate()
            assert process.returncode == 0
            for name in streams:
                assert f"declared stream {name}" in out.decode()
            for name in partition_queues:
                assert f"declared queue {name}" in out.decode()
        connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
        async with connection:
            channel = await connection.channel()
            for queue in (settings.intake_queue, settings.dead_letter_queue, *partition_queues, *streams):
                await channel.declare_queue(queue, passive=True)
            commands = await channel.declare_exchange(settings.command_exchange, passive=True)
            confirmed = await connection.channel(publisher_confirms=True)
            exchange = await confirmed.get_exchange(settings.command_exchange)
            await exchange.publish(
                aio_pika.Message(b"{}", content_type="application/json"), routing_key="session.start"
            )
            intake = await channel.declare_queue(settings.intake_queue, passive=True)
            assert intake.declaration_result.message_count == 1  # bound: the first command waits for the bridge
            assert commands.name == settings.command_exchange
    finally:
        await delete_names(
            settings.amqp_url.get_secret_value(),
            exchanges=(settings.command_exchange, settings.event_exchange),
            queues=(settings.intake_queue, settings.dead_letter_queue, *partition_queues, *streams),
        )


async def test_declare_against_a_conflicting_queue_fails_clearly(settings: Settings, broker_names: BrokerNames) -> None:
    url = settings.amqp_url.get_secret_value()
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(settings.intake_queue, durable=True)  # a classic queue squats on the name
        env = {**os.environ, "BRIDGE_AMQP_URL": url, "BRIDGE_INTAKE_QUEUE": settings.intake_queue}
        env |= {
            "BRIDGE_COMMAND_EXCHANGE": settings.command_exchange,
            "BRIDGE_DEAD_LETTER_QUEUE": settings.dead_letter_queue,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "declare", env=env, stderr=asyncio.subprocess.PIPE
        )
        _out, err = await process.communicate()
        assert process.returncode == 1
        assert "PRECONDITION_FAILED" in err.decode()
    finally:
        await connection.close()
        await delete_names(
            url, exchanges=(settings.command_exchange,), queues=(settings.intake_queue, settings.dead_letter_queue)
        )
