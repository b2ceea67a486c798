"""An abrupt Genesys socket drop while the agent keeps talking: resume, backfill once, lose no command."""

from __future__ import annotations

import pytest

from genesys_bridge_client.contract.events import MessageReceived, SessionResumed
from tests.conftest import BrokerNames
from tests.e2e.stack import e2e_stack, quiet_simulator

pytestmark = pytest.mark.timeout(30)


async def test_socket_drop_backfills_every_missed_message_once_and_loses_no_command(
    broker_names: BrokerNames, amqp_url: str
) -> None:
    sim_config = quiet_simulator(message_rate_per_s=None)
    async with e2e_stack(broker_names, amqp_url, sim_config=sim_config, send_rate_per_s=50.0, send_burst=10) as stack:
        sim, client, events = stack.sim, stack.client, stack.client.events
        await client.started("s")
        session = stack.sim_session("s")

        before = await sim.agent_say(session, "seen live")
        first = await client.say("s", "c1")
        await events.wait_for(lambda _: any(m.genesys_message_id == before for m in events.messages("s")))
        assert (await events.outcome(first)).status == "delivered"

        # The socket dies without a close frame (1006). None of these calls yields to the event loop, so the
        # agent's three messages land in history while the bridge has no connection (§4.9): they are missed.
        assert await sim.drop_connections(session) == 1
        missed = [await sim.agent_say(session, f"while away {i}") for i in range(3)]
        assert sim.session(session).connections == []
        # Commands published during the outage wait for the resumed connection.
        during = [await client.say("s", f"c{i}") for i in (2, 3)]

        resumed = await events.wait_for(lambda _: bool(events.of("s", "session.resumed")))
        event = events.of("s", "session.resumed")[0]
        assert isinstance(event, SessionResumed)
        assert (event.cause, event.missed_messages) == ("reconnect", 3)
        assert resumed

        outcomes = await events.all_settled([first, *during])
        assert [o.status for o in outcomes] == ["delivered"] * 3
        after = await sim.agent_say(session, "after the resume")
        await events.wait_for(lambda _: any(m.genesys_message_id == after for m in events.messages("s")))

        agent = [m for m in events.messages("s") if isinstance(m, MessageReceived)]
        by_id: dict[str, list[MessageReceived]] = {}
        for message in agent:
            by_id.setdefault(message.genesys_message_id, []).append(message)
        assert [m.genesys_message_id for m in agent if m.genesys_message_id in {before, *missed, after}] == [
            before,
            *missed,
            after,
        ], "each agent message published exactly once, in conversation order"
        assert all(by_id[i][0].backfilled for i in missed)
        assert not by_id[before][0].backfilled
        assert not by_id[after][0].backfilled
        assert [m.text for m in (by_id[i][0] for i in missed)] == [f"while away {i}" for i in range(3)]

        # No command lost or duplicated: each settled once, each text reached Genesys once, in order.
        assert all(len(events.settled(c)) == 1 for c in [first, *during])
        assert [r.text for r in sim.received(session)] == ["c1", "c2", "c3"]
        assert len(sim.sessions()) == 1, "the resume used the same Genesys session (startNew:false)"


async def test_a_frame_genesys_sends_twice_is_published_once(broker_names: BrokerNames, amqp_url: str) -> None:
    async with e2e_stack(broker_names, amqp_url) as stack:
        sim, client, events = stack.sim, stack.client, stack.client.events
        await client.started("s")
        session = stack.sim_session("s")
        await sim.duplicate_next(session, 1)
        twice = await sim.agent_say(session, "said once, sent twice")
        after = await sim.agent_say(session, "the next one")
        await events.wait_for(lambda _: any(m.genesys_message_id == after for m in events.messages("s")))
        assert [m.genesys_message_id for m in events.messages("s")] == [twice, after]
