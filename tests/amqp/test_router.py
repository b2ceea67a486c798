"""The router against the real broker: copies of many sessions in flight together, each session in order.

A session's commands must reach its partition queue in the order they were published, also when one
copy is not confirmed while others are in flight: that copy's lane stops, the intake's link breaks, and
the broker gives the window back in order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from bridge.amqp.connection import BrokerLinks, Connect, ReopeningConnection, open_connection
from bridge.amqp.consumer import CommandIntake
from bridge.amqp.forwarder import QueueForwarder
from bridge.amqp.messages import Outbound
from bridge.amqp.publisher import AmqpEventPublisher
from bridge.amqp.topology import TopologyNames, declare_partition_queue
from bridge.config import Settings
from bridge.errors import BrokerUnavailable
from bridge.observability.metrics import Metrics
from bridge.partition.layout import partition_of, partition_queue
from bridge.partition.router import PartitionRouter
from bridge.ports import Envelope
from tests.amqp.conftest import WAIT_S, Broker, GatedConnect, Inbox, command, command_ids_until, make_settings, sample
from tests.conftest import BrokerNames

PARTITIONS = 2


@pytest.fixture
def settings(broker_names: BrokerNames, amqp_url: str) -> Settings:
    return make_settings(broker_names, amqp_url, partitions=PARTITIONS)


@asynccontextmanager
async def routing(
    settings: Settings,
    metrics: Metrics,
    *,
    connect: Connect = open_connection,
    forwarder_type: type[QueueForwarder] = QueueForwarder,
    router_type: type[PartitionRouter] = PartitionRouter,
) -> AsyncIterator[CommandIntake]:
    """A router on the intake queue, as the daemon wires it; stopped and drained as the daemon drains it."""
    links = BrokerLinks(metrics)
    forwarding = ReopeningConnection(settings, name=f"{settings.intake_queue}.router")
    forwarder = forwarder_type(forwarding, confirm_timeout_s=settings.publish_timeout_s)
    try:
        async with (
            AmqpEventPublisher(settings, metrics, links=links, connection_name=f"{settings.intake_queue}.pub") as sink,
            router_type(
                forwarder, intake_queue=settings.intake_queue, partitions=settings.partitions, metrics=metrics
            ) as router,
            CommandIntake(
                settings,
                metrics,
                handler=router,
                sink=sink,
                dead_letters=sink,
                links=links,
                connect=connect,
                connection_name=f"{settings.intake_queue}.intake",
                settle=router.drain,
            ) as intake,
        ):
            async with asyncio.timeout(WAIT_S):
                await sink.wait_connected()
                await intake.wait_consuming()
            yield intake
            async with asyncio.timeout(WAIT_S):
                await intake.stop_intake()
            assert not router.busy
    finally:
        await forwarder.close()
        await forwarding.close()


async def partition_queues(broker: Broker, *indexes: int) -> dict[int, Inbox]:
    """Declare the partition queues ``indexes`` (removed with the test's queues) and consume each."""
    names = TopologyNames.from_settings(broker.settings)
    inboxes = {}
    for index in indexes:
        queue = partition_queue(broker.settings.intake_queue, index)
        await declare_partition_queue(broker.channel, names, queue)
        broker.queues.append(queue)
        inboxes[index] = await broker.consume(queue)
    return inboxes


def sessions_in(partition: int, count: int) -> list[str]:
    """``count`` session ids that fall into ``partition``."""
    ids = (f"s-{n}" for n in range(10_000))
    return [s for s in ids if partition_of(s, PARTITIONS) == partition][:count]


class FirstCopyOfA1Fails(QueueForwarder):
    """The real forwarder, except that the first copy of command ``A-1`` is not confirmed, and not before
    ``A-3`` was handed to the router (so ``A-2`` and ``A-3`` wait in its lane when it fails)."""

    failed = False
    a3_submitted = asyncio.Event()

    async def forward(self, message: Outbound, queue: str) -> None:
        if not self.failed and json.loads(message.body)["command_id"] == "A-1":
            await self.a3_submitted.wait()
            FirstCopyOfA1Fails.failed = True
            raise BrokerUnavailable("no confirm (test)")
        await super().forward(message, queue)


class WatchedRouter(PartitionRouter):
    """The router, saying when ``A-3`` was handed to it and when its drain began."""

    draining = asyncio.Event()

    async def submit(self, envelope: Envelope) -> None:
        await super().submit(envelope)
        if envelope.command.command_id == "A-3":
            FirstCopyOfA1Fails.a3_submitted.set()

    async def drain(self) -> None:
        self.draining.set()
        await super().drain()


class HeldCopies(QueueForwarder):
    """The real forwarder, holding every copy until released."""

    started = asyncio.Event()
    release = asyncio.Event()

    async def forward(self, message: Outbound, queue: str) -> None:
        self.started.set()
        await self.release.wait()
        await super().forward(message, queue)


def first_arrivals(ids: list[str]) -> list[str]:
    """Each id once, where it first arrived (a copy whose ack was lost with its link may come twice)."""
    return list(dict.fromkeys(ids))


async def test_each_sessions_commands_reach_its_partition_in_order_while_copies_overlap(
    settings: Settings, metrics: Metrics, broker: Broker
) -> None:
    inboxes = await partition_queues(broker, 0, 1)
    sessions = sessions_in(0, 4) + sessions_in(1, 4)
    published: dict[str, list[str]] = {s: [] for s in sessions}
    async with routing(settings, metrics):
        for n in range(8):  # interleaved: every session's n-th command before any (n+1)-th
            for session_id in sessions:
                body = command(session_id=session_id, command_id=f"{session_id}-c{n}")
                published[session_id].append(body["command_id"])
                await broker.send_command(body)
        for partition, inbox in inboxes.items():
            expected = [c for s in sessions if partition_of(s, PARTITIONS) == partition for c in published[s]]
            arrived = await command_ids_until(inbox, expected)
            assert len(arrived) == len(expected)  # no failure, so no copy twice
            for session_id in sessions:
                if partition_of(session_id, PARTITIONS) == partition:
                    assert [c for c in arrived if c.startswith(f"{session_id}-")] == published[session_id]
    assert sample(metrics, "genesys_bridge_router_routed_total") == sum(len(ids) for ids in published.values())


async def test_a_copy_that_is_not_confirmed_gives_the_window_back_and_every_session_keeps_its_order(
    settings: Settings, metrics: Metrics, broker: Broker
) -> None:
    # Partition 1's queue does not exist yet: its copies come back unroutable, which is "not confirmed".
    [inbox_0] = (await partition_queues(broker, 0)).values()
    [a] = sessions_in(1, 1)
    [b] = sessions_in(0, 1)
    order = [f"{a}-1", f"{b}-1", f"{a}-2", f"{b}-2", f"{a}-3"]
    gate = GatedConnect()
    async with routing(settings, metrics, connect=gate):
        gate.gate.clear()  # the intake's reconnect waits here, so the link breaks exactly once
        for command_id in order:
            await broker.send_command(command(session_id=command_id.rsplit("-", 1)[0], command_id=command_id))
        async with asyncio.timeout(WAIT_S):
            await gate.waiting.wait()  # the router broke the intake's link
        [inbox_1] = (await partition_queues(broker, 1)).values()
        gate.gate.set()
        a_arrived = await command_ids_until(inbox_1, [f"{a}-1", f"{a}-2", f"{a}-3"])
        b_arrived = await command_ids_until(inbox_0, [f"{b}-1", f"{b}-2"])
    assert a_arrived == [f"{a}-1", f"{a}-2", f"{a}-3"]  # none was copied before the queue existed
    assert first_arrivals(b_arrived) == [f"{b}-1", f"{b}-2"]


async def test_a_failed_copy_stops_its_session_lane_so_no_later_command_overtakes_it(
    settings: Settings, metrics: Metrics, broker: Broker
) -> None:
    # Here the commands after A-1 could be copied (their queue exists): only the lane keeps them back.
    inboxes = await partition_queues(broker, 0, 1)
    a_inbox = inboxes[partition_of("A", PARTITIONS)]
    gate = GatedConnect()
    FirstCopyOfA1Fails.failed = False
    FirstCopyOfA1Fails.a3_submitted = asyncio.Event()
    async with routing(settings, metrics, connect=gate, forwarder_type=FirstCopyOfA1Fails, router_type=WatchedRouter):
        gate.gate.clear()
        for command_id in ("A-1", "A-2", "A-3"):
            await broker.send_command(command(session_id="A", command_id=command_id))
        async with asyncio.timeout(WAIT_S):
            await gate.waiting.wait()
        gate.gate.set()
        arrived = await command_ids_until(a_inbox, ["A-1", "A-2", "A-3"])
    assert FirstCopyOfA1Fails.failed
    assert arrived == ["A-1", "A-2", "A-3"]


async def test_a_stop_keeps_the_queue_until_the_copies_in_flight_have_landed(
    settings: Settings, metrics: Metrics, broker: Broker
) -> None:
    # Cancelled at once, the intake queue would pass to the next replica in line while this one still copies.
    inbox = (await partition_queues(broker, partition_of("A", PARTITIONS)))[partition_of("A", PARTITIONS)]
    HeldCopies.started, HeldCopies.release, WatchedRouter.draining = asyncio.Event(), asyncio.Event(), asyncio.Event()
    async with routing(settings, metrics, forwarder_type=HeldCopies, router_type=WatchedRouter) as intake:
        await broker.send_command(command(session_id="A", command_id="A-1"))
        async with asyncio.timeout(WAIT_S):
            await HeldCopies.started.wait()
            stopping = asyncio.create_task(intake.stop_intake())
            await WatchedRouter.draining.wait()
        # Commands that come meanwhile are held, not handed over; the queue is still ours.
        for command_id in ("A-2", "A-3"):
            await broker.send_command(command(session_id="A", command_id=command_id))
        assert await broker.consumer_count(settings.intake_queue) == 1
        HeldCopies.release.set()
        async with asyncio.timeout(WAIT_S):
            await stopping
        assert await command_ids_until(inbox, ["A-1"]) == ["A-1"]
    # What the stop held went back to the intake queue, in order, for the next consumer in line: this take
    # is given them only once the router's consumer is gone (the broker drops it a moment after the close).
    returned = await broker.take(settings.intake_queue, 2)
    assert [json.loads(m.body)["command_id"] for m in returned] == ["A-2", "A-3"]
    for message in returned:
        await message.nack(requeue=True)
