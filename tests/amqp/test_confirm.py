"""The one confirmed publish, against the real broker: routed, returned, and two publishes with one message id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection

from bridge.amqp import confirm
from bridge.amqp.confirm import publish_confirmed
from bridge.amqp.messages import Outbound
from bridge.errors import BrokerUnavailable, PublishTimeout
from tests.amqp.conftest import WAIT_S, Broker
from tests.amqp.held_answers import HeldAnswers


@pytest.fixture
async def confirmed(broker: Broker) -> AbstractChannel:
    return await broker.connection.channel(publisher_confirms=True, on_return_raises=False)


async def queue_of(broker: Broker, suffix: str) -> str:
    name = f"{broker.settings.intake_queue}.{suffix}"
    await broker.channel.declare_queue(name)
    broker.queues.append(name)
    return name


async def publish(channel: AbstractChannel, queue: str, *, message_id: str | None = None, body: bytes = b"{}") -> bool:
    async with asyncio.timeout(WAIT_S):
        return await publish_confirmed(
            channel,
            Outbound.of(body, message_id=message_id),
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


async def test_a_caller_giving_up_as_the_broker_returns_its_message_leaves_the_channel_working(
    broker: Broker, confirmed: AbstractChannel
) -> None:
    # A publish's deadline or a stopping caller cancels the caller's wait. If that lands in the loop turn
    # that reads the broker's return for it, the answer must still find somewhere to go: had the cancel
    # reached aiormq's own confirm, resolving it would kill the channel's frame reader, and with it every
    # later publish on the channel (the way a publisher connection once stalled under load).
    queue = await queue_of(broker, "exists")
    underlay = cast(aiormq.Channel, await confirmed.get_underlay_channel())
    caller = asyncio.create_task(publish(confirmed, f"{queue}.missing", message_id="gives-up"))
    returned = asyncio.get_running_loop().create_future()

    def give_up(_: object) -> None:  # runs inside aiormq's handling of the return, before it resolves the publish
        caller.cancel()
        returned.set_result(None)

    underlay.on_return_callbacks.add(give_up)
    async with asyncio.timeout(WAIT_S):
        await returned
    with pytest.raises(asyncio.CancelledError):
        await caller
    underlay.on_return_callbacks.discard(give_up)
    assert await publish(confirmed, queue) is True
    assert await publish(confirmed, f"{queue}.missing") is False


@pytest.fixture
async def held(broker: Broker) -> AsyncIterator[tuple[HeldAnswers, AbstractConnection]]:
    """A connection through a relay that can hold the broker's answers back."""
    async with HeldAnswers(broker.settings.amqp_url.get_secret_value()) as relay:
        connection = await aio_pika.connect(relay.url)
        async with connection:
            yield relay, connection


async def give_up_on(channel: AbstractChannel, queue: str, *, message_id: str, body: bytes = b"{}") -> None:
    """Publish with a deadline that passes (the broker's answers are held): PublishTimeout."""
    message = Outbound.of(body, message_id=message_id)
    with pytest.raises(PublishTimeout):
        await publish_confirmed(channel, message, exchange="", routing_key=queue, timeout_s=0.05, what=queue)


async def test_publishes_given_up_on_a_stalled_channel_still_go_out_and_are_bounded(
    broker: Broker, held: tuple[HeldAnswers, AbstractConnection], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A broker that stops answering: each caller's deadline passes, the publishes stay under way (they
    # were written, so they are not withdrawn), and past the bound the channel refuses more at once instead
    # of holding every retry in memory. The relay holds only the broker's answers: they reach the queue.
    monkeypatch.setattr(confirm, "ABANDONED_MAX", 2)
    relay, connection = held
    queue = await queue_of(broker, "stalled")
    stalled = await connection.channel(publisher_confirms=True, on_return_raises=False)
    relay.hold()
    for n in range(2):
        await give_up_on(stalled, queue, message_id=f"m-{n}")
    with pytest.raises(BrokerUnavailable, match=r"2 earlier publishes .* unanswered"):
        await publish(stalled, queue)
    assert [m.message_id for m in await broker.take(queue, 2)] == ["m-0", "m-1"]
    relay.release()
    fresh = await connection.channel(publisher_confirms=True, on_return_raises=False)
    assert await publish(fresh, queue, message_id="m-2") is True


async def test_a_publish_given_up_before_its_frames_left_is_withdrawn(
    broker: Broker, held: tuple[HeldAnswers, AbstractConnection]
) -> None:
    # The second publish with one message id waits until the broker answered the first. Its caller gives
    # up meanwhile: nothing of it was written, so it is withdrawn, and the broker never sees it. A third
    # with that id still waits for the first, unanswered: the withdrawn one does not free its turn.
    relay, connection = held
    queue = await queue_of(broker, "withdrawn")
    channel = await connection.channel(publisher_confirms=True, on_return_raises=False)
    relay.hold()
    first = asyncio.create_task(publish(channel, queue, message_id="same", body=b"first"))
    assert [m.body for m in await broker.take(queue, 1)] == [b"first"]  # written; its answer held
    await give_up_on(channel, queue, message_id="same", body=b"second")
    await give_up_on(channel, queue, message_id="same", body=b"third")
    relay.release()
    assert await first is True
    assert await publish(channel, queue, message_id="fourth", body=b"fourth") is True
    assert [m.body for m in await broker.take(queue, 1)] == [b"fourth"]
    ready = await broker.channel.declare_queue(queue, passive=True)
    assert ready.declaration_result.message_count == 0


async def test_a_publish_given_up_while_waiting_for_its_channel_is_withdrawn(
    broker: Broker, confirmed: AbstractChannel
) -> None:
    # aiormq writes one publish at a time per channel, under the channel's lock. A publish waiting for that
    # lock has written nothing: given up there, it is withdrawn and the broker never sees it (held as
    # written, it would go out once the lock is free, ahead of the publish below).
    queue = await queue_of(broker, "locked")
    underlay = cast(aiormq.Channel, await confirmed.get_underlay_channel())
    async with underlay.lock:  # as an earlier publish on the channel holds it
        await give_up_on(confirmed, queue, message_id="waits", body=b"waits")
    assert await publish(confirmed, queue, message_id="after", body=b"after") is True
    assert [m.body for m in await broker.take(queue, 1)] == [b"after"]
    ready = await broker.channel.declare_queue(queue, passive=True)
    assert ready.declaration_result.message_count == 0
