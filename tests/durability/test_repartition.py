"""``genesys-bridge repartition``: a stopped deployment moves to another partition count, or up from a release
before partitions, and loses nothing (docs/scaling.md, "Changing the partition count").

Real bridges as processes, the real broker, the simulator, and the tool as a CLI process. Commands left in
the old partition queues and in the intake queue are delivered once each, in order per session; every live
session is resumed in place by the new owner of its partition.
"""

from __future__ import annotations

import json
import re
import signal
import uuid

import aio_pika
import aiormq
import pytest

from bridge.amqp.connection import ReopeningConnection
from bridge.amqp.journal import StreamJournal
from bridge.amqp.topology import TopologyNames, intake_queue_arguments
from bridge.config import Settings
from bridge.errors import EXIT_CONFIG
from bridge.partition.layout import PROBE_TYPE, journal_stream_of, partition_of, partition_queue, presence_queue
from bridge.simulator import Simulator
from tests.amqp.conftest import make_settings
from tests.cli.helpers import cli
from tests.conftest import BrokerNames
from tests.daemon import Daemon
from tests.durability.conftest import EnvFactory
from tests.durability.helpers import Conversation, assert_resumed_in_place, open_sessions, wait_received_texts
from tests.e2e.harness import Integrator

pytestmark = pytest.mark.timeout(180)


async def _open_then_drain(
    sim: Simulator, client: Integrator, env: dict[str, str], *, sessions: int
) -> list[Conversation]:
    """Run a bridge with ``env``, open ``sessions`` sessions through it, and stop it (SIGTERM drains it)."""
    async with Daemon(env, name="before") as before:
        await before.started()
        conversations = await open_sessions(client, sim, [f"s{i}" for i in range(sessions)])
        assert await before.stop(signal.SIGTERM) == 0, before.tail()
    return conversations


async def _exists(amqp_url: str, queue: str) -> bool:
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        try:
            await channel.declare_queue(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        return True


async def _publish_into(amqp_url: str, queue: str, bodies: list[bytes], *, type_: str | None = None) -> None:
    """Publish ``bodies`` straight into ``queue``, confirmed, as the router leaves them there."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        for body in bodies:
            message = aio_pika.Message(body, type=type_, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await channel.default_exchange.publish(message, routing_key=queue)


def _command(session_id: str, text: str) -> tuple[str, bytes]:
    command_id = uuid.uuid4().hex
    body = {"command_id": command_id, "type": "message.send", "session_id": session_id, "text": text}
    return command_id, json.dumps(body).encode()


async def _check_delivered_in_order(sim: Simulator, client: Integrator, conversations: list[Conversation]) -> None:
    for conv in conversations:
        texts = [text for _, text in conv.commands]
        await wait_received_texts(sim, conv, texts)
        received = [r.text for r in sim.received(conv.token) if r.text in texts]
        assert received == texts, f"{conv.session_id}: Genesys got {received}, expected {texts}"
        for command_id, _ in conv.commands:
            outcome = await client.events.outcome(command_id)
            assert outcome.status == "delivered", outcome
            assert len(client.events.settled(command_id)) == 1


async def test_four_partitions_become_three_with_commands_in_the_old_queues(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory, names: BrokerNames, amqp_url: str
) -> None:
    conversations = await _open_then_drain(sim, client, bridge_env(PARTITIONS="4"), sessions=8)

    # What a stopped router left behind: two commands per session in its old partition queue, then one more
    # still in the intake queue (published after), and a probe.
    for conv in conversations:
        old = partition_queue(names.intake_queue, partition_of(conv.session_id, 4))
        for k in range(2):
            command_id, body = _command(conv.session_id, f"cmd {conv.session_id} #{k}")
            await _publish_into(amqp_url, old, [body])
            conv.commands.append((command_id, f"cmd {conv.session_id} #{k}"))
    await _publish_into(amqp_url, partition_queue(names.intake_queue, 3), [b"replica-x"], type_=PROBE_TYPE)
    for conv in conversations:
        text = f"cmd {conv.session_id} #2"
        conv.commands.append((await client.say(conv.session_id, text), text))

    done = await cli("repartition", env=bridge_env(PARTITIONS="3"))
    assert done.returncode == 0, done.stderr
    assert "4 -> 3 partitions: 16 command(s) moved" in done.stdout, done.stdout
    assert int(re.search(r"(\d+) probe\(s\) dropped", done.stdout)[1]) >= 1, done.stdout  # type: ignore[index]
    assert "8 live session(s)" in done.stdout, done.stdout
    assert not await _exists(amqp_url, partition_queue(names.intake_queue, 3))
    assert not await _exists(amqp_url, journal_stream_of(names.journal_stream, 3))

    again = await cli("repartition", env=bridge_env(PARTITIONS="3"))
    assert again.returncode == 0, again.stderr
    assert "3 -> 3 partitions: 0 command(s) moved" in again.stdout, again.stdout
    assert "8 live session(s), 0 record(s) copied" in again.stdout, again.stdout

    async with Daemon(bridge_env(PARTITIONS="3"), name="three") as three:
        await three.started()
        assert (await three.recovered())["sessions"] == len(conversations)
        await _check_delivered_in_order(sim, client, conversations)
        for conv in conversations:
            assert_resumed_in_place(sim, conv)
            assert len(client.events.of(conv.session_id, "session.resumed")) == 1


async def test_a_release_before_partitions_is_upgraded_in_place(
    sim: Simulator, client: Integrator, bridge_env: EnvFactory, names: BrokerNames, amqp_url: str
) -> None:
    conversations = await _open_then_drain(sim, client, bridge_env(PARTITIONS="1"), sessions=3)

    # Lay the broker out as a release before partitions left it: one journal stream and an intake queue
    # without single-active-consumer, holding the commands published while it was stopped.
    settings = make_settings(names, amqp_url, journal_stream=names.journal_stream)
    await _move_journal(settings, journal_stream_of(names.journal_stream, 0), names.journal_stream)
    await _old_intake(amqp_url, settings, names)
    for conv in conversations:
        text = f"cmd {conv.session_id} #0"
        conv.commands.append((await client.say(conv.session_id, text), text))

    done = await cli("repartition", env=bridge_env(PARTITIONS="2"))
    assert done.returncode == 0, done.stderr
    assert "0 -> 2 partitions: 3 command(s) moved" in done.stdout, done.stdout
    assert "intake queue upgraded" in done.stdout

    async with Daemon(bridge_env(PARTITIONS="2"), name="two") as two:
        await two.started()
        assert (await two.recovered())["sessions"] == len(conversations)
        await _check_delivered_in_order(sim, client, conversations)
        for conv in conversations:
            assert_resumed_in_place(sim, conv)


async def test_a_start_with_another_partition_count_is_refused(bridge_env: EnvFactory) -> None:
    """The count is fixed for a deployment's life: more or fewer partitions than its queues is exit 78,
    with a message that says what to do."""
    async with Daemon(bridge_env(PARTITIONS="4"), name="four") as four:
        await four.started()
        assert await four.stop(signal.SIGTERM) == 0, four.tail()
    for count, found in (("3", "at least 4"), ("6", "fewer")):
        async with Daemon(bridge_env(PARTITIONS=count), name=f"p{count}") as daemon:
            assert await daemon.exited() == EXIT_CONFIG, daemon.tail()
            failed = await daemon.wait_log("startup_failed")
            assert f"BRIDGE_PARTITIONS={count}" in failed["error"], failed
            assert f"partition queues of {found} partitions" in failed["error"], failed
            assert "genesys-bridge repartition" in failed["error"], failed


async def test_it_refuses_while_a_replica_runs(bridge_env: EnvFactory, names: BrokerNames, amqp_url: str) -> None:
    async with Daemon(bridge_env(PARTITIONS="2"), name="running") as running:
        await running.started()
        done = await cli("repartition", env=bridge_env(PARTITIONS="3"))
        assert done.returncode == 1
        assert "stop every replica" in done.stderr, done.stderr
        assert not await _exists(amqp_url, partition_queue(names.intake_queue, 2))
        assert running.alive


async def _move_journal(settings: Settings, source: str, target: str) -> None:
    """Copy every record of stream ``source`` into stream ``target``, then delete ``source``."""
    connection = ReopeningConnection(settings, name="test-repartition-journal")
    try:
        bodies: list[bytes] = []
        reader = StreamJournal(connection, stream=source, max_age=settings.journal_max_age, confirm_timeout_s=10)
        async with reader:
            await reader.replay(bodies.append)
        async with StreamJournal.from_settings(connection, settings) as writer:
            assert writer.stream == target
            for body in bodies:
                await writer.append(body)
        channel = await (await connection.get()).channel()
        await channel.queue_delete(source)
    finally:
        await connection.close()


async def _old_intake(amqp_url: str, settings: Settings, names: BrokerNames) -> None:
    """Replace the partitioned layout's queues with the intake queue of a release before partitions."""
    old_arguments = dict(intake_queue_arguments(TopologyNames.from_settings(settings)))
    del old_arguments["x-single-active-consumer"]
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        for queue in (names.intake_queue, partition_queue(names.intake_queue, 0), presence_queue(names.intake_queue)):
            await channel.queue_delete(queue)
        intake = await channel.declare_queue(names.intake_queue, durable=True, arguments=old_arguments)
        await intake.bind(names.command_exchange, routing_key="#")
