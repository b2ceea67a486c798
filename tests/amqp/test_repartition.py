"""The repartition tool against the real broker, resumed after a crash in either phase: each session's
commands end up in its new partition queue in publish order, once, and the staging queue and the marker
are gone (docs/scaling.md, "Changing the partition count")."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection

from bridge.amqp.connection import open_connection
from bridge.amqp.repartition import distributing_marker, repartition, staging_queue
from bridge.amqp.tools import delete_deployment, delete_names
from bridge.amqp.topology import TopologyNames, declare_partition_queue, declare_topology
from bridge.config import Settings
from bridge.errors import ConfigError
from bridge.partition.layout import partition_of, partition_queue
from tests.amqp.conftest import make_settings
from tests.conftest import BrokerNames

pytestmark = pytest.mark.timeout(60)

SESSION = "order-4711"


@pytest.fixture
async def connection(broker_names: BrokerNames, amqp_url: str) -> AsyncIterator[AbstractConnection]:
    settings = make_settings(broker_names, amqp_url)
    connection = await open_connection(settings, name=f"{broker_names.prefix}.helper")
    try:
        yield connection
    finally:
        await connection.close()
        await delete_deployment(amqp_url, settings.model_copy(update={"partitions": 8}))
        # A marker names its count, and a deployment's clean-up knows only its own.
        await delete_names(amqp_url, queues=tuple(distributing_marker(settings.intake_queue, n) for n in range(1, 9)))


@pytest.fixture
async def channel(connection: AbstractConnection) -> AbstractChannel:
    return await connection.channel(publisher_confirms=True)


def _settings(names: BrokerNames, amqp_url: str, partitions: int) -> Settings:
    return make_settings(names, amqp_url, partitions=partitions, durable_sessions=False)


async def _layout(channel: AbstractChannel, settings: Settings) -> None:
    """The topology and partition queues a deployment of ``settings.partitions`` partitions has."""
    await declare_topology(channel, settings)
    names = TopologyNames.from_settings(settings)
    for n in range(settings.partitions):
        await declare_partition_queue(channel, names, partition_queue(settings.intake_queue, n))


async def _put(channel: AbstractChannel, queue: str, *texts: str) -> None:
    for text in texts:
        body = json.dumps({"command_id": text, "type": "message.send", "session_id": SESSION, "text": text})
        await channel.default_exchange.publish(aio_pika.Message(body.encode()), routing_key=queue)


async def _texts(connection: AbstractConnection, queue: str) -> list[str]:
    """What ``queue`` holds, in order (consumed and returned: single-active-consumer queues refuse get)."""
    reader = await connection.channel()
    declared = await reader.declare_queue(queue, passive=True)
    count = declared.declaration_result.message_count or 0
    await reader.set_qos(prefetch_count=max(1, count))
    texts: list[str] = []
    async with (await reader.get_queue(queue)).iterator() as messages:
        async for message in messages:
            texts.append(json.loads(message.body)["text"])
            if len(texts) == count:
                break
    await reader.close()  # unacked: they go back
    return texts


async def _gone(connection: AbstractConnection, queue: str) -> bool:
    probe = await connection.channel()
    try:
        await probe.declare_queue(queue, passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return True
    await probe.close()
    return False


async def test_a_run_that_stopped_while_distributing_finishes_in_order(
    connection: AbstractConnection, channel: AbstractChannel, broker_names: BrokerNames, amqp_url: str
) -> None:
    """Stopped mid-distribution: #1 already in the new partition, #2 and #3 still staged. A rerun only
    distributes (the marker says gathering is done), so #1 is never gathered again behind the others."""
    settings = _settings(broker_names, amqp_url, 4)
    await _layout(channel, settings)
    home = partition_queue(settings.intake_queue, partition_of(SESSION, 4))
    await _put(channel, home, "#1")
    await channel.declare_queue(
        staging_queue(settings.intake_queue), durable=True, arguments={"x-queue-type": "quorum"}
    )
    await _put(channel, staging_queue(settings.intake_queue), "#2", "#3")
    await channel.declare_queue(distributing_marker(settings.intake_queue, 4), durable=True)

    report = await repartition(settings)

    assert report.commands_moved == 2
    assert await _texts(connection, home) == ["#1", "#2", "#3"]
    assert await _gone(connection, staging_queue(settings.intake_queue))
    assert await _gone(connection, distributing_marker(settings.intake_queue, 4))


async def test_a_run_that_stopped_while_gathering_finishes_in_order(
    connection: AbstractConnection, channel: AbstractChannel, broker_names: BrokerNames, amqp_url: str
) -> None:
    """Growing from 2 to 3 partitions, stopped mid-gathering: #1 staged, #2 and #3 still in the old queue,
    no marker. A rerun gathers the rest behind #1, then distributes all three in order."""
    old = _settings(broker_names, amqp_url, 2)
    await _layout(channel, old)
    await _put(channel, partition_queue(old.intake_queue, partition_of(SESSION, 2)), "#2", "#3")
    await channel.declare_queue(staging_queue(old.intake_queue), durable=True, arguments={"x-queue-type": "quorum"})
    await _put(channel, staging_queue(old.intake_queue), "#1")

    report = await repartition(_settings(broker_names, amqp_url, 3))

    assert (report.partitions_before, report.partitions_after, report.commands_moved) == (2, 3, 3)
    home = partition_queue(old.intake_queue, partition_of(SESSION, 3))
    assert await _texts(connection, home) == ["#1", "#2", "#3"]
    assert await _gone(connection, staging_queue(old.intake_queue))
    assert await _gone(connection, distributing_marker(old.intake_queue, 3))
    assert not await _gone(connection, partition_queue(old.intake_queue, 2))


async def test_shrinking_deletes_the_queues_beyond_the_new_count(
    connection: AbstractConnection, channel: AbstractChannel, broker_names: BrokerNames, amqp_url: str
) -> None:
    old = _settings(broker_names, amqp_url, 5)
    await _layout(channel, old)
    await _put(channel, partition_queue(old.intake_queue, 4), "#1", "#2")

    report = await repartition(_settings(broker_names, amqp_url, 2))

    assert report.commands_moved == 2
    assert await _texts(connection, partition_queue(old.intake_queue, partition_of(SESSION, 2))) == ["#1", "#2"]
    for n in (2, 3, 4):
        assert await _gone(connection, partition_queue(old.intake_queue, n))
    assert [q for q in report.deleted if ".p" in q] == [partition_queue(old.intake_queue, n) for n in (4, 3, 2)]


async def test_a_run_to_another_count_is_refused_while_one_is_distributing(
    connection: AbstractConnection, channel: AbstractChannel, broker_names: BrokerNames, amqp_url: str
) -> None:
    """Finishing a stopped run to 4 partitions with 3 would split sessions between two layouts."""
    settings = _settings(broker_names, amqp_url, 4)
    await _layout(channel, settings)
    staged = staging_queue(settings.intake_queue)
    await channel.declare_queue(staged, durable=True, arguments={"x-queue-type": "quorum"})
    await _put(channel, staged, "#2")
    await channel.declare_queue(distributing_marker(settings.intake_queue, 4), durable=True)

    with pytest.raises(ConfigError, match="BRIDGE_PARTITIONS=4"):
        await repartition(_settings(broker_names, amqp_url, 3))
    assert await _texts(connection, staged) == ["#2"]
    assert not await _gone(connection, partition_queue(settings.intake_queue, 3))
