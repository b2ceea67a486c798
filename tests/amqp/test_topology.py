"""The topology: declared with the documented arguments, idempotent, and the delivery limit works."""

from __future__ import annotations

import aio_pika
import aiormq.exceptions
import pytest
from aio_pika.abc import AbstractIncomingMessage

from bridge.amqp.connection import broker_error
from bridge.amqp.topology import DEAD_LETTER_QUEUE_ARGUMENTS, TopologyNames, declare_topology, intake_queue_arguments
from bridge.config import Settings
from bridge.errors import BrokerError, is_retryable
from tests.amqp.conftest import Broker, command


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
