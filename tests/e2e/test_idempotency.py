"""A repeated ``command_id`` is executed once in Genesys; the original outcome is published again."""

from __future__ import annotations

import json
import signal
import uuid

import pytest

from bridge.app import running_bridge
from bridge.observability.metrics import Metrics
from bridge.partition.layout import partition_of, partition_queue
from bridge.simulator import Simulator
from bridge.store import generate_key
from tests.conftest import BrokerNames
from tests.daemon import Daemon, daemon_env
from tests.e2e.harness import integrator, kill_connection, ready_count
from tests.e2e.stack import cleanup_names, e2e_settings, e2e_stack, quiet_simulator

pytestmark = pytest.mark.timeout(40)

#: Longer than any test here: an echo delayed this long is held until its socket closes.
ECHO_HELD_S = 60.0


async def test_a_repeated_command_id_is_answered_with_the_original_outcome(
    broker_names: BrokerNames, amqp_url: str
) -> None:
    async with e2e_stack(broker_names, amqp_url) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        command = {"type": "message.send", "command_id": uuid.uuid4().hex, "session_id": "s", "text": "once"}
        body = json.dumps(command).encode()

        await client.publisher.send(body)
        original = await events.outcome(command["command_id"])
        assert original.status == "delivered"
        # A publisher retry: the same command again, this time asking for a reply.
        await client.publisher.send(body, reply_to=client.reply_to)
        await events.wait_for(lambda _: len(events.outcomes(command["command_id"])) == 2)
        await client.replies.wait_for(lambda got: len(got) == 1)

        first, again = events.outcomes(command["command_id"])
        assert again == first, "the original outcome, published again (same event_id, same Genesys id)"
        assert client.replies.events == [first]
        assert [r.text for r in stack.sim.received(stack.sim_session("s"))] == ["once"]


async def test_a_duplicate_while_the_original_is_in_flight_is_executed_once(
    broker_names: BrokerNames, amqp_url: str
) -> None:
    async with e2e_stack(broker_names, amqp_url) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        command_id = uuid.uuid4().hex
        body = json.dumps({"type": "message.send", "command_id": command_id, "session_id": "s", "text": "twice"})
        await client.publisher.send(body.encode())
        await client.publisher.send(body.encode())
        await events.wait_for(lambda _: len(events.outcomes(command_id)) == 2)
        first, second = events.outcomes(command_id)
        assert first == second
        assert first.status == "delivered"
        assert [r.text for r in stack.sim.received(stack.sim_session("s"))] == ["twice"]


async def test_a_command_redelivered_after_its_connection_died_unacked_is_executed_once(
    broker_names: BrokerNames, amqp_url: str
) -> None:
    """The command reached Genesys, but its echo is held back; meanwhile the broker closes the connection of
    the session's partition. The bridge fences: it closes the session's socket without ending it (the held
    echo goes with it), never settles the command, and the redelivery goes to the partition's next owner
    (here the same process), which resumes the session from the journal and finds the text in the history
    instead of sending it again."""
    sim_config = quiet_simulator()
    async with e2e_stack(
        broker_names, amqp_url, sim_config=sim_config, durable_sessions=True, state_key=generate_key()
    ) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        session = stack.sim_session("s")
        # Held, not late: a kill (two rabbitmqctl runs, a second or more each) must never race the echo.
        await stack.sim.set_delay(session, ECHO_HELD_S, classes=["StructuredMessage"])
        sent = await client.say("s", "exactly once")
        await stack.sim.wait_received(session, 1, timeout_s=10)  # Genesys has it; the bridge waits for the echo
        partition = partition_of("s", stack.settings.partitions)
        assert await kill_connection(f"{stack.connection_name}.p{partition}") == 1
        assert not events.settled(sent), "the kill came while the command was in flight"
        await stack.sim.set_delay(session, 0.0)

        outcome = await events.outcome(sent, timeout_s=30)
        assert outcome.status == "delivered"
        # However often it is answered, the answer is one event (one event_id), and Genesys got the text once.
        assert len({o.event_id for o in events.settled(sent)}) == 1
        assert [r.text for r in stack.sim.received(session)] == ["exactly once"]
        after = await client.say("s", "and the next one")
        assert (await events.outcome(after)).status == "delivered"
        assert len({o.event_id for o in events.settled(sent)}) == 1
        assert await ready_count(amqp_url, partition_queue(stack.settings.intake_queue, partition)) == 0
        assert [r.text for r in stack.sim.received(session)] == ["exactly once", "and the next one"]


@pytest.mark.slow
async def test_a_send_redelivered_after_the_daemon_crashed_unacked_is_executed_once(
    broker_names: BrokerNames, amqp_url: str
) -> None:
    """SIGKILL while a message.send waits for its echo (Genesys already has it): the next daemon resumes the
    session from the journal, gets the command redelivered and must find it in history, not send it again."""
    try:
        async with Simulator(quiet_simulator(message_rate_per_s=None)) as sim:
            settings = e2e_settings(
                broker_names, amqp_url, genesys_base_url=sim.base_url, durable_sessions=True, state_key=generate_key()
            )
            async with integrator(
                amqp_url, command_exchange=settings.command_exchange, event_exchange=settings.event_exchange
            ) as client:
                events = client.events
                async with Daemon(daemon_env(settings)) as daemon:
                    await daemon.started()
                    await client.started("s")
                    session = sim.nth_session(0)
                    assert session is not None
                    await sim.set_delay(session, ECHO_HELD_S)  # the echo never reaches this daemon
                    sent = await client.say("s", "crash once")
                    await sim.wait_received(session, 1, timeout_s=10)
                    assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL
                await sim.set_delay(session, 0.0)
                assert not events.settled(sent)

                async with running_bridge(
                    settings, metrics=Metrics(process_metrics=False), connection_name=f"e2e.{broker_names.prefix}"
                ):
                    outcome = await events.outcome(sent)
                    assert outcome.status == "delivered", outcome
                    await events.wait_for(lambda _: bool(events.of("s", "session.resumed")))
                    after = await client.say("s", "after the crash")
                    assert (await events.outcome(after)).status == "delivered"
                assert [r.text for r in sim.received(session)] == ["crash once", "after the crash"]
                assert len({o.event_id for o in events.settled(sent)}) == 1
                assert outcome.genesys_message_id == sim.received(session)[0].id
    finally:
        await cleanup_names(broker_names, amqp_url)
