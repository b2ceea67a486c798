"""A partition's owner gives its queue up (a hand-off, or a stop) and the next owner gets every command in order.

The owner holds the oldest commands (handed to its sessions; its fence settles one and gives the other
back), the newest wait ready in the queue. Whatever way the queue changes hands, the next consumer in line
must be given the held ones first, and never the settled one: a session's commands run once, in the order
they were published.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import aio_pika
import pytest

from bridge.amqp.connection import BrokerLinks
from bridge.amqp.consumer import CommandIntake
from bridge.amqp.publisher import AmqpEventPublisher
from bridge.amqp.topology import TopologyNames, declare_partition_queue
from bridge.config import Settings
from bridge.observability.metrics import Metrics
from bridge.partition.layout import partition_queue
from tests.amqp.conftest import WAIT_S, Broker, RecordingHandler, command, command_ids_until, make_settings
from tests.conftest import BrokerNames

PREFETCH = 2
COMMANDS = [f"A-{n}" for n in range(1, 7)]


@pytest.fixture
def settings(broker_names: BrokerNames, amqp_url: str) -> Settings:
    return make_settings(broker_names, amqp_url, partitions=1, prefetch=PREFETCH)


class FencingTenure:
    """The partition is ours from the first delivery. The fence settles the oldest command (a session finishing
    the command in flight) and gives back every other one a session still holds, as the session registry's
    drain does (the intake keeps those requeues back)."""

    def __init__(self, handler: RecordingHandler) -> None:
        self.handler = handler

    async def gained(self, waiting_since: datetime | None) -> bool:
        return True

    async def ended(self, *, link_lost: bool) -> None:
        first, *rest = self.handler.seen
        await first.delivery.ack()
        for envelope in rest:
            await envelope.delivery.requeue()


@pytest.mark.parametrize("give_up", ["hand_off", "stop_intake"])
async def test_the_next_owner_is_given_the_held_commands_before_the_newer_ones(
    settings: Settings, metrics: Metrics, broker: Broker, give_up: str
) -> None:
    queue = partition_queue(settings.intake_queue, 0)
    await declare_partition_queue(broker.channel, TopologyNames.from_settings(settings), queue)
    broker.queues.append(queue)
    handler = RecordingHandler(auto_ack=False)
    links = BrokerLinks(metrics)
    async with (
        AmqpEventPublisher(settings, metrics, links=links, connection_name=f"{queue}.pub") as sink,
        CommandIntake(
            settings,
            metrics,
            handler=handler,
            sink=sink,
            dead_letters=sink,
            links=links,
            queue=queue,
            tenure=FencingTenure(handler),
            connection_name=f"{queue}.owner",
        ) as intake,
    ):
        async with asyncio.timeout(WAIT_S):
            await intake.wait_consuming()
        for command_id in COMMANDS:
            body = aio_pika.Message(json.dumps(command(session_id="A", command_id=command_id)).encode())
            await broker.channel.default_exchange.publish(body, routing_key=queue)
        held = await handler.take(PREFETCH)  # the owner's window: the rest waits ready in the queue
        assert [e.command.command_id for e in held] == COMMANDS[:PREFETCH]
        standby = await broker.consume(queue)  # next in line: this owner is the active consumer
        async with asyncio.timeout(WAIT_S):
            await getattr(intake, give_up)()
        # The settled one never comes back (its ack went out before the channel closed); the rest in order.
        assert await command_ids_until(standby, COMMANDS[1:]) == COMMANDS[1:]
