"""The one confirmed publish, against the real broker: routed, returned, and two publishes with one message id."""

from __future__ import annotations

import asyncio

import pytest
from aio_pika.abc import AbstractChannel

from bridge.amqp.confirm import publish_confirmed
from bridge.amqp.messages import Outbound
from tests.amqp.conftest import WAIT_S, Broker


@pytest.fixture
async def confirmed(broker: Broker) -> AbstractChannel:
    return await broker.connection.channel(publisher_confirms=True, on_return_raises=False)


async def queue_of(broker: Broker, suffix: str) -> str:
    name = f"{broker.settings.intake_queue}.{suffix}"
    await broker.channel.declare_queue(name)
    broker.queues.append(name)
    return name


async def publish(channel: AbstractChannel, queue: str, *, message_id: str | None = None) -> bool:
    async with asyncio.timeout(WAIT_S):
        return await publish_confirmed(
            channel,
            Outbound.of(b"{}", message_id=message_id),
            exchange="",
            routing_key=queue,
            timeout_s=WAIT_S,
            what=f"queue {queue!r}",
        )


async def test_a_routed_publish_is_true_and_a_returned_one_false(broker: Broker, confirmed: AbstractChannel) -> None:
    queue = await queue_of(broker, "exists")
    assert await publish(confirmed, queue) is True
    assert await publish(confirmed, f"{queue}.missing") is False


async def test_publishes_with_one_message_id_in_flight_together_keep_their_own_outcomes(
    broker: Broker, confirmed: AbstractChannel
) -> None:
    # The broker's return names only the message id: matched to the wrong publish, the returned copy would
    # count as routed, and the routed one as returned.
    queue = await queue_of(broker, "exists")
    missing, routed = await asyncio.gather(
        publish(confirmed, f"{queue}.missing", message_id="same-id"),
        publish(confirmed, queue, message_id="same-id"),
    )
    assert (missing, routed) == (False, True)
