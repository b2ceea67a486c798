"""What real Genesys does that our own assumptions once hid: one test per behaviour, over real sockets.

Each runs against both simulator profiles (see conftest); a test that needs a feature real deployments
have off turns it on in its ``quiet_simulator(...)``. docs/genesys-protocol.md §16 lists them.
"""

from __future__ import annotations

import pytest

from bridge.simulator import GenesysSessionState
from genesys_bridge_client.contract import CommandOutcome, MessageReceived, PresenceReceived, SessionStarted
from tests.conftest import BrokerNames
from tests.e2e.stack import e2e_stack, quiet_simulator

pytestmark = pytest.mark.timeout(45)

DEPLOYMENT = "dep-1"


async def test_an_untraced_429_after_typing_goes_to_the_message_not_the_typing(
    broker_names: BrokerNames, amqp_url: str
) -> None:
    """§6, §10: the typing notice is never pending, so the 429 (no tracingId) is the message's to retry."""
    sim_config = quiet_simulator(typing_enabled=True, error_tracing_id="never", message_rate_per_s=0.5, retry_after_s=1)
    async with e2e_stack(broker_names, amqp_url, sim_config=sim_config, send_rate_per_s=50.0, send_burst=10) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        typing = await client.send({"type": "typing.send", "session_id": "s"})
        said = await client.say("s", "after typing")
        assert (await events.outcome(typing)).status == "delivered"
        outcome = await events.outcome(said, timeout_s=20)
        assert (outcome.status, outcome.reason) == ("delivered", "ok"), outcome.detail
        retries = [o for o in events.outcomes(said) if o.status == "will_retry"]
        assert retries
        assert retries[0].genesys_code in (429, 4029)
        texts = [r.text for r in stack.sim.received(stack.sim_session("s")) if r.text]
        assert texts == ["after typing"]  # delivered once


@pytest.mark.parametrize("overtake", ["late", "lost"])
async def test_a_disconnect_that_overtakes_the_agents_last_message_loses_nothing(
    broker_names: BrokerNames, amqp_url: str, overtake: str
) -> None:
    """§10: the last message is in history; its frame comes after the Disconnect, or never."""
    sim_config = quiet_simulator(disconnect_enabled=True, disconnect_mode="read_only")
    async with e2e_stack(broker_names, amqp_url, sim_config=sim_config) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        await stack.sim.agent_say_and_disconnect(stack.sim_session("s"), "thanks, goodbye", overtake=overtake)
        ended = await events.ended("s")
        assert ended.reason == "agent_disconnected"
        kinds = [e.type for e in events.of("s")]
        assert kinds.index("message.received") < kinds.index("session.ended")
        assert [m.text for m in events.messages("s")] == ["thanks, goodbye"]


async def test_session_end_where_clear_is_not_allowed_leaves_the_conversation_to_the_agent(
    broker_names: BrokerNames, amqp_url: str
) -> None:
    async with e2e_stack(broker_names, amqp_url, sim_config=quiet_simulator(clear_enabled=False)) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        session = stack.sim_session("s")
        (started,) = events.of("s", "session.started")
        assert isinstance(started, SessionStarted)
        assert started.features.clear is False
        end = await client.send({"type": "session.end", "session_id": "s"})
        assert (await events.outcome(end)).status == "delivered"
        ended = await events.ended("s")
        assert ended.reason == "guest_left"
        assert ended.detail is not None
        assert "stays open for the agent" in ended.detail
        assert session.state is GenesysSessionState.ACTIVE  # not cleared: the agent still has the conversation
        assert not any(r.type == "Event" for r in stack.sim.received(session))  # no Clear was tried


async def test_session_end_where_clear_is_allowed_clears_it(broker_names: BrokerNames, amqp_url: str) -> None:
    async with e2e_stack(broker_names, amqp_url, sim_config=quiet_simulator(clear_enabled=True)) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        session = stack.sim_session("s")
        end = await client.send({"type": "session.end", "session_id": "s"})
        assert (await events.outcome(end)).status == "delivered"
        assert (await events.ended("s")).reason == "guest_ended"
        assert session.state is GenesysSessionState.CLEARED


async def test_a_send_mode_disconnect_keeps_the_session_writable(broker_names: BrokerNames, amqp_url: str) -> None:
    """§5.3: with Disconnect in Send mode the guest may write on; the next message starts a new conversation."""
    sim_config = quiet_simulator(disconnect_enabled=True, disconnect_mode="send")
    async with e2e_stack(broker_names, amqp_url, sim_config=sim_config) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        (started,) = events.of("s", "session.started")
        assert isinstance(started, SessionStarted)
        assert started.features.disconnect == "send"
        await stack.sim.disconnect(stack.sim_session("s"))
        await events.wait_for(lambda _: bool(events.of("s", "presence.received")))
        (presence,) = events.of("s", "presence.received")
        assert isinstance(presence, PresenceReceived)
        assert (presence.kind, presence.read_only) == ("disconnect", False)
        after = await events.outcome(await client.say("s", "one more question"))
        assert (after.status, after.reason) == ("delivered", "ok")
        assert not events.of("s", "session.ended")


async def test_4007_ends_the_session_as_conversation_lost(broker_names: BrokerNames, amqp_url: str) -> None:
    """§6: Genesys lost the session (no event): the next request draws 4007, final in Genesys' own SDK."""
    async with e2e_stack(broker_names, amqp_url) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        stack.sim_session("s").state = GenesysSessionState.CLEARED  # gone on Genesys' side, nothing pushed
        late = await events.outcome(await client.say("s", "hello?"))
        assert (late.status, late.reason) in (("failed", "session_ended"), ("failed", "genesys_error"))
        assert (await events.ended("s")).reason == "conversation_lost"
        after = await events.outcome(await client.say("s", "and now?"))
        assert after.status == "rejected"


async def test_a_deployment_restricted_to_allowed_domains_gets_its_origin(
    broker_names: BrokerNames, amqp_url: str
) -> None:
    """§2.3: the upgrade carries the deployment's configured Origin; without one it would be refused."""
    sim_config = quiet_simulator(allowed_origins=frozenset({"https://shop.example.com"}))
    origins = f'{{"{DEPLOYMENT}": "https://shop.example.com"}}'
    async with e2e_stack(broker_names, amqp_url, sim_config=sim_config, deployment_origins=origins) as stack:
        await stack.client.started("s")
        outcome = await stack.client.events.outcome(await stack.client.say("s", "hello from the shop"))
        assert outcome.status == "delivered"


async def test_a_deployment_restricted_to_other_domains_refuses_the_session(
    broker_names: BrokerNames, amqp_url: str
) -> None:
    sim_config = quiet_simulator(allowed_origins=frozenset({"https://shop.example.com"}))
    async with e2e_stack(broker_names, amqp_url, sim_config=sim_config) as stack:
        client, events = stack.client, stack.client.events
        start = await client.start("s")
        outcome = await events.outcome(start)
        assert outcome.status == "failed"
        assert (await events.ended("s")).reason == "rejected_by_genesys"


async def test_a_burst_of_six_sends_draws_no_429(broker_names: BrokerNames, amqp_url: str) -> None:
    """§8: Genesys allows 2 messages a second; the default budget never sends more than 2 in any second.

    Against the stricter sliding-window counting (``message_rate_counting="window"``) the budget has no
    margin for frames delayed on the way, so it is not claimed there (see CHANGELOG)."""
    async with e2e_stack(broker_names, amqp_url, sim_config=quiet_simulator()) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        sent = [await client.say("s", f"burst {i}") for i in range(6)]
        outcomes = await events.all_settled(sent, timeout_s=20)
        assert [o.status for o in outcomes] == ["delivered"] * 6
        assert not [o for c in sent for o in events.outcomes(c) if o.status == "will_retry"]


async def test_a_session_without_agent_activity_ends_idle(broker_names: BrokerNames, amqp_url: str) -> None:
    """With Disconnect off (the real default) the agent's end is never announced: the idle timeout ends it."""
    async with e2e_stack(broker_names, amqp_url, session_idle_timeout_s=0.5) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        session = stack.sim_session("s")
        ended = await events.ended("s")
        assert ended.reason == "idle"
        assert session.state is GenesysSessionState.ACTIVE  # left to the agent, not cleared
        await stack.sim.wait_for(lambda: not session.connections or None, timeout_s=5)


@pytest.mark.parametrize("refreshable", [True, False])
async def test_attachment_refresh_asks_genesys_for_a_fresh_url(
    broker_names: BrokerNames, amqp_url: str, refreshable: bool
) -> None:
    """§4.6: download URLs expire (4008); getAttachment gives a fresh one, where Genesys serves it."""
    sim_config = quiet_simulator(agent_script=True, refresh_agent_attachments=refreshable)
    async with e2e_stack(broker_names, amqp_url, sim_config=sim_config) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        await client.say("s", "attachment")
        await events.wait_for(lambda _: any(m.parts for m in events.messages("s")))
        part = next(p for m in events.messages("s") for p in m.parts if p.kind == "attachment")
        refresh = await client.send({"type": "attachment.refresh", "session_id": "s", "attachment_id": part.id})
        outcome = await events.outcome(refresh)
        assert isinstance(outcome, CommandOutcome)
        if refreshable:
            assert (outcome.status, outcome.reason) == ("delivered", "ok")
            assert outcome.attachment is not None
            assert outcome.attachment.id == part.id
            assert outcome.attachment.url
        else:
            assert (outcome.status, outcome.genesys_code) == ("failed", 4009)
            assert outcome.attachment is None


async def test_messages_are_published_in_genesys_order_with_the_reorder_window(
    broker_names: BrokerNames, amqp_url: str
) -> None:
    """§10: Genesys promises no ordering; with the window on, channel.time decides."""
    async with e2e_stack(
        broker_names, amqp_url, sim_config=quiet_simulator(random_seed=7), reorder_window_s=0.3
    ) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        session = stack.sim_session("s")
        await stack.sim.set_reorder(session, 4)
        for i in range(4):
            await stack.sim.agent_say(session, f"m{i}")
        await events.wait_for(lambda _: len(events.messages("s")) == 4)
        received = events.messages("s")
        assert all(isinstance(m, MessageReceived) for m in received)
        assert sorted(m.text or "" for m in received) == ["m0", "m1", "m2", "m3"]
        # Shuffled on the wire, published by Genesys' clock (ties, within one millisecond, keep arrival order;
        # tests/session/test_endings.py pins the order with distinct times).
        times = [m.genesys_time for m in received]
        assert all(t is not None for t in times)
        assert times == sorted(times)  # type: ignore[type-var]
