"""The broker closes the bridge's connections mid-stream (``rabbitmqctl close_connection``): nothing is lost."""

from __future__ import annotations

import httpx
import pytest

from genesys_bridge_client.contract.events import CommandOutcome
from tests.conftest import BrokerNames
from tests.e2e.harness import kill_connection
from tests.e2e.stack import e2e_stack, quiet_simulator

pytestmark = pytest.mark.timeout(45)

SESSIONS = [f"k{i}" for i in range(4)]
PER_BATCH = 5


async def test_broker_connections_killed_mid_stream_lose_nothing(broker_names: BrokerNames, amqp_url: str) -> None:
    sim_config = quiet_simulator(message_rate_per_s=None)
    # 4 messages/s per session: a batch of 5 takes over a second, so the kill lands while commands are held
    # unacked in the sessions' inboxes and outcomes are being published.
    async with e2e_stack(broker_names, amqp_url, sim_config=sim_config, send_rate_per_s=4.0, send_burst=1) as stack:
        sim, client, events = stack.sim, stack.client, stack.client.events
        for sid in SESSIONS:
            await client.started(sid)
        sessions = {sid: stack.sim_session(sid) for sid in SESSIONS}

        commands: list[str] = []
        texts: dict[str, list[str]] = {sid: [] for sid in SESSIONS}
        agent_ids: list[str] = []

        async def batch(label: str) -> None:
            for i in range(PER_BATCH):
                for sid in SESSIONS:
                    text = f"{label}-{i}"
                    texts[sid].append(text)
                    commands.append(await client.say(sid, text))

        await batch("a")
        # Mid-stream: some outcomes are out, others still in flight.
        await events.wait_for(lambda got: sum(isinstance(e, CommandOutcome) for e in got) >= len(SESSIONS) + 3)
        # The agent talks while the bridge loses the broker.
        agent_ids += [await sim.agent_say(sessions[sid], f"agent to {sid} during the kill") for sid in SESSIONS]
        in_flight = [c for c in commands if not events.settled(c)]
        killed = await kill_connection(f"{stack.connection_name}.intake")
        killed += await kill_connection(f"{stack.connection_name}.publisher")
        assert killed == 2
        await batch("b")  # published while the bridge reconnects: the quorum queue keeps them
        agent_ids += [await sim.agent_say(sessions[sid], f"agent to {sid} after the kill") for sid in SESSIONS]

        await events.all_settled(commands, timeout_s=30)
        await events.wait_for(
            lambda got: {m.genesys_message_id for sid in SESSIONS for m in events.messages(sid)} >= set(agent_ids),
            timeout_s=30,
        )

        assert in_flight, "the kill came mid-stream"
        for command_id in commands:
            settled = events.settled(command_id)
            # Events are at-least-once: a repeat after a lost confirm is the same event (same event_id).
            assert len({o.event_id for o in settled}) == 1, settled
            assert settled[0].status == "delivered", settled[0]
        for sid in SESSIONS:
            assert [r.text for r in sim.received(sessions[sid])] == texts[sid], "each text reached Genesys once"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.bridge.http.port}") as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text  # broker connected and intake consuming again
        reconnects = stack.bridge.metrics.registry.get_sample_value(
            "genesys_bridge_reconnects_total", {"target": "broker"}
        )
        assert (reconnects or 0) >= 2, "both links reconnected"
