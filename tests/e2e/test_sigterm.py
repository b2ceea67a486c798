"""SIGTERM drain of a real daemon process, then the next daemon picks up what was left (durable sessions).

The drain (docs/rabbitmq.md, "Shutdown"): stop the intake, settle in-flight commands, close sockets
without ending sessions (never ``closeSession``, never Presence ``Clear``), flush confirms, exit 0. Commands
not yet started go back to the queue and the next daemon, which resumes the session from the journal,
runs them.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import aio_pika
import pytest

from bridge.amqp.connection import open_connection
from bridge.amqp.topology import declare_topology
from bridge.app import running_bridge
from bridge.config import Settings
from bridge.observability.metrics import Metrics
from bridge.partition.layout import PROBE_TYPE, partition_of, partition_queue
from bridge.simulator import Simulator, SimulatorConfig, actions
from bridge.simulator.session import GenesysSessionState
from bridge.store import generate_key
from genesys_bridge_client.contract.events import SessionResumed
from tests.conftest import BrokerNames
from tests.daemon import Daemon, daemon_env
from tests.e2e.harness import integrator, ready_count
from tests.e2e.stack import cleanup_names, e2e_settings, quiet_simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

TEXTS = [f"queued {i}" for i in range(8)]


def _record_close_session(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Wrap the simulator's ``closeSession`` handler (§4.7) so the test sees whether it was ever called."""
    seen: list[str] = []
    original = actions.SESSION_ACTIONS["closeSession"]

    def recording(engine: Any, conn: Any, session: Any, request: Any, tracing_id: Any) -> None:
        seen.append(session.session_id)
        original(engine, conn, session, request, tracing_id)

    monkeypatch.setitem(actions.SESSION_ACTIONS, "closeSession", recording)
    return seen


async def _declare_topology(settings: Settings) -> None:
    connection = await open_connection(settings, name="e2e-topology")
    try:
        await declare_topology(await connection.channel(), settings)
    finally:
        await connection.close()


async def test_sigterm_drains_exits_0_and_the_next_daemon_resumes(
    broker_names: BrokerNames, amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = _record_close_session(monkeypatch)
    sim_config: SimulatorConfig = quiet_simulator(message_rate_per_s=None)
    try:
        async with Simulator(sim_config) as sim:
            # 2 messages/s with no burst: the 8 messages take ~4 s, so SIGTERM finds a backlog.
            settings = e2e_settings(
                broker_names,
                amqp_url,
                genesys_base_url=sim.base_url,
                durable_sessions=True,
                state_key=generate_key(),
                send_rate_per_s=2.0,
                send_burst=1,
                drain_timeout_s=5.0,
            )
            async with integrator(
                amqp_url, command_exchange=settings.command_exchange, event_exchange=settings.event_exchange
            ) as client:
                events = client.events
                # Everything is queued before the daemon starts, so the broker hands it all over in one burst
                # when the intake starts consuming: by the first outcome, the backlog sits in the session.
                await _declare_topology(settings)
                start = await client.start("s")
                ids = [await client.say("s", text) for text in TEXTS]
                async with Daemon(daemon_env(settings)) as daemon:
                    await daemon.started()
                    assert (await events.outcome(start)).status == "delivered"
                    session = sim.nth_session(0)
                    assert session is not None
                    await events.outcome(ids[0])
                    code = await daemon.stop(signal.SIGTERM)
                    assert code == 0, daemon.tail(20)
                    await daemon.wait_log("bridge_stopped")

                assert daemon.events("drain_finished")
                settled = [c for c in ids if events.settled(c)]
                assert 1 <= len(settled) < len(TEXTS), "SIGTERM came with a backlog"
                assert all(len(events.settled(c)) == 1 for c in settled)
                # The rest were requeued, not settled and not lost.
                # (in the session's partition queue, or still in the intake if the router had not moved them)
                partition = partition_queue(settings.intake_queue, partition_of("s", settings.partitions))
                ready = await ready_count(amqp_url, partition) + await ready_count(amqp_url, settings.intake_queue)
                assert ready == len(TEXTS) - len(settled)
                # The Genesys session is intact: not ended, not cleared, no closeSession.
                assert sim.session(session).state is GenesysSessionState.ACTIVE
                assert closed == []
                assert not events.of("s", "session.ended")
                assert not any(r.events for r in sim.received(session)), "no Presence event (Clear) was sent"

                # The next daemon resumes the session from the journal and runs the requeued commands.
                async with running_bridge(
                    settings, metrics=Metrics(process_metrics=False), connection_name=f"e2e.{broker_names.prefix}"
                ):
                    await events.all_settled(ids)
                    resumed = await events.wait_for(lambda _: bool(events.of("s", "session.resumed")))
                    assert resumed
                    (event,) = events.of("s", "session.resumed")
                    assert isinstance(event, SessionResumed)
                    assert event.cause == "restart"
                for command_id in ids:
                    outcomes = events.settled(command_id)
                    assert len({o.event_id for o in outcomes}) == 1
                    assert outcomes[0].status == "delivered"
                assert [r.text for r in sim.received(session)] == TEXTS, "each message reached Genesys once, in order"
                assert len(sim.sessions()) == 1, "resumed with the same token (startNew:false)"
                assert closed == []
    finally:
        await cleanup_names(broker_names, amqp_url)


async def _queued_command_ids(amqp_url: str, queue: str) -> list[str]:
    """Take every ready message out of ``queue`` (in queue order); the command ids. The queue is a single
    active consumer queue, which refuses basic.get, so a consumer takes the count a passive declare reports."""
    connection = await aio_pika.connect(amqp_url, client_properties={"connection_name": "e2e-queue-reader"})
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        count = int(declared.declaration_result.message_count or 0)
        ids: list[str] = []
        if count:
            async with declared.iterator(no_ack=True) as messages:
                taken = 0
                async for message in messages:
                    taken += 1
                    if message.type != PROBE_TYPE:  # the replicas' ownership probes are not commands
                        ids.append(str(json.loads(message.body).get("command_id")))
                    if taken == count:
                        break
        return ids
    finally:
        await connection.close()


async def test_drain_requeues_a_sessions_commands_in_delivery_order(broker_names: BrokerNames, amqp_url: str) -> None:
    """The commands a drain hands back must return to the queue in their delivery order, or the next daemon
    runs a session's commands out of order. Here a later command of the session is still in its partition
    consumer's hands (behind a burst of other commands) when that consumer stops, while earlier ones wait in
    the session."""
    try:
        async with Simulator(quiet_simulator(message_rate_per_s=None)) as sim:
            settings = e2e_settings(
                broker_names,
                amqp_url,
                genesys_base_url=sim.base_url,
                prefetch=2000,  # the whole burst is delivered at once
                send_rate_per_s=0.5,  # one send per 2 s: the session's commands wait in its inbox
                send_burst=1,
            )
            async with integrator(
                amqp_url, command_exchange=settings.command_exchange, event_exchange=settings.event_exchange
            ) as client:
                events = client.events
                async with running_bridge(
                    settings, metrics=Metrics(process_metrics=False), connection_name=f"e2e.{broker_names.prefix}"
                ) as bridge:
                    await client.started("s")
                    partition = partition_of("s", settings.partitions)
                    first = await client.say("s", "first")
                    waiting = [await client.say("s", f"waiting {i}") for i in range(2)]
                    await events.outcome(first)
                    burst = [await client.say(f"nobody-{i}", "x") for i in range(150)]
                    late = await client.say("s", "late")
                    # The burst is being answered; the rest of it, and the late command, wait in the partition's
                    # consumer.
                    await events.wait_for(lambda _: all(events.settled(c) for c in burst[:5]))
                    await bridge.intakes[partition].stop_intake()
                queued = await _queued_command_ids(amqp_url, partition_queue(settings.intake_queue, partition))
            names = {waiting[0]: "waiting 0", waiting[1]: "waiting 1", late: "late"}
            order = [names[c] for c in queued if c in names]
            expected = [names[c] for c in [*waiting, late] if not events.settled(c)]
            assert order == expected, "the session's commands return in delivery order"
    finally:
        await cleanup_names(broker_names, amqp_url)
