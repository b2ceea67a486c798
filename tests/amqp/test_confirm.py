"""The one confirmed publish, against the real broker: routed, returned, and two publishes with one message id."""

from __future__ import annotations

import asyncio
from typing import cast

import aiormq
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


@pytest.mark.parametrize("returned", [True, False], ids=["returned", "routed"])
async def test_a_caller_giving_up_as_the_broker_answers_leaves_the_channel_working(
    broker: Broker, confirmed: AbstractChannel, returned: bool
) -> None:
    # A publish's deadline or a stopping caller cancels the caller's wait. If that lands in the loop turn
    # that reads the broker's return for it, the answer must still find somewhere to go: had the cancel
    # reached aiormq's own confirm, resolving it would kill the channel's frame reader, and with it every
    # later publish on the channel (the way a publisher connection once stalled under load).
    queue = await queue_of(broker, "exists")
    underlay = cast(aiormq.Channel, await confirmed.get_underlay_channel())
    caller = asyncio.create_task(publish(confirmed, f"{queue}.missing" if returned else queue, message_id="gives-up"))
    answered = asyncio.get_running_loop().create_future()

    def give_up(_: object) -> None:  # runs inside aiormq's handling of the return, before it resolves the publish
        caller.cancel()
        answered.set_result(None)

    underlay.on_return_callbacks.add(give_up)
    if returned:
        async with asyncio.timeout(WAIT_S):
            await answered
    else:
        caller.cancel()  # the routed case: cancelled while its confirm is still to come
    with pytest.raises(asyncio.CancelledError):
        await caller
    underlay.on_return_callbacks.discard(give_up)
    assert await publish(confirmed, queue) is True
    assert await publish(confirmed, f"{queue}.missing") is False
