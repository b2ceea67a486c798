"""Each Genesys error code, produced by the simulator over a real socket, as the integrator sees it (§6, §8)."""

from __future__ import annotations

import dataclasses

import pytest

from bridge.simulator import GenesysSessionState
from genesys_bridge_client.contract.events import CommandOutcome, SessionStarted
from tests.conftest import BrokerNames
from tests.e2e.stack import e2e_stack, quiet_simulator

pytestmark = pytest.mark.timeout(30)


async def test_4011_text_too_long_for_genesys_fails_and_the_session_goes_on(
    broker_names: BrokerNames, amqp_url: str
) -> None:
    # The simulated deployment's limit is below the bridge's own 4096-byte check, so Genesys answers.
    async with e2e_stack(broker_names, amqp_url, sim_config=quiet_simulator(max_text_bytes=100)) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        long = await client.say("s", "x" * 200)
        outcome = await events.outcome(long)
        assert (outcome.status, outcome.reason, outcome.genesys_code) == ("failed", "message_too_long", 4011)
        short = await client.say("s", "short one")
        assert (await events.outcome(short)).status == "delivered"
        assert [r.text for r in stack.sim.received(stack.sim_session("s"))] == ["short one"]
        assert not events.of("s", "session.ended")


async def test_attributes_over_the_advertised_limit_are_rejected_before_sending(
    broker_names: BrokerNames, amqp_url: str
) -> None:
    # SessionResponse advertises maxCustomDataBytes=50 (§5.1): the bridge checks it before sending.
    async with e2e_stack(broker_names, amqp_url, sim_config=quiet_simulator(max_custom_data_bytes=50)) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        big = await client.say("s", "with attributes", custom_attributes={"note": "n" * 100})
        outcome = await events.outcome(big)
        assert (outcome.status, outcome.reason) == ("rejected", "attributes_too_large")
        plain = await client.say("s", "without")
        assert (await events.outcome(plain)).status == "delivered"
        assert [r.text for r in stack.sim.received(stack.sim_session("s"))] == ["without"]


async def test_4013_attributes_too_large_for_genesys_fails(broker_names: BrokerNames, amqp_url: str) -> None:
    async with e2e_stack(broker_names, amqp_url) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        # The deployment's limit drops below what its SessionResponse advertised (2048): only Genesys knows.
        stack.sim.engine.config = dataclasses.replace(stack.sim.config, max_custom_data_bytes=50)
        big = await client.say("s", "with attributes", custom_attributes={"note": "n" * 100})
        outcome = await events.outcome(big)
        assert (outcome.status, outcome.reason, outcome.genesys_code) == ("failed", "attributes_too_large", 4013)
        plain = await client.say("s", "without")
        assert (await events.outcome(plain)).status == "delivered"
        assert [r.text for r in stack.sim.received(stack.sim_session("s"))] == ["without"]


async def test_409_read_only_fails_the_send_and_ends_the_session(broker_names: BrokerNames, amqp_url: str) -> None:
    async with e2e_stack(broker_names, amqp_url) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        session = stack.sim_session("s")
        # The agent disconnected read-only and the bridge missed the Presence Disconnect (§5.6, §11.3): only
        # the 409 on the next send tells it. The simulator has no control call for a missed frame, so set
        # the state its Disconnect would have left.
        session.read_only = True
        late = await client.say("s", "anyone?")
        outcome = await events.outcome(late)
        assert (outcome.status, outcome.reason, outcome.genesys_code) == ("failed", "read_only", 409)
        assert (await events.ended("s")).reason == "read_only"
        assert stack.sim.received(session) == []
        after = await client.say("s", "hello?")
        assert (await events.outcome(after)).reason == "unknown_session"


async def test_agent_read_only_disconnect_ends_the_session(broker_names: BrokerNames, amqp_url: str) -> None:
    sim_config = quiet_simulator(disconnect_enabled=True, disconnect_mode="read_only")
    async with e2e_stack(broker_names, amqp_url, sim_config=sim_config) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        await stack.sim.disconnect(stack.sim_session("s"), read_only=True)
        ended = await events.ended("s")
        assert ended.reason in ("agent_disconnected", "read_only")
        assert (await events.outcome(await client.say("s", "hello?"))).reason == "unknown_session"


async def test_429_retry_after_delivers_each_message_exactly_once(broker_names: BrokerNames, amqp_url: str) -> None:
    # Genesys allows 1 message/s here and asks to retry after 1 s; the bridge's own budget is generous,
    # so Genesys (not the bridge) limits the rate and answers 4029 with retryAfter.
    sim_config = quiet_simulator(message_rate_per_s=1.0, retry_after_s=1)
    async with e2e_stack(broker_names, amqp_url, sim_config=sim_config, send_rate_per_s=50.0, send_burst=10) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        texts = [f"burst {i}" for i in range(3)]
        ids = [await client.say("s", text) for text in texts]
        outcomes = await events.all_settled(ids)
        assert [o.status for o in outcomes] == ["delivered"] * 3
        assert all(len(events.settled(i)) == 1 for i in ids)
        received = stack.sim.received(stack.sim_session("s"))
        assert [r.text for r in received] == texts, "each message reached Genesys once, in order"
        assert len({o.genesys_message_id for o in outcomes}) == 3
        waits = stack.bridge.metrics.registry.get_sample_value("genesys_bridge_genesys_errors_total", {"code": "4029"})
        assert (waits or 0) >= 1, "Genesys really pushed back"


async def test_4006_expiry_ends_the_session_as_expired(broker_names: BrokerNames, amqp_url: str) -> None:
    async with e2e_stack(broker_names, amqp_url) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        await stack.sim.expire(stack.sim_session("s"))
        assert (await events.ended("s")).reason == "expired"
        late = await client.say("s", "still there?")
        assert (await events.outcome(late)).reason == "unknown_session"


async def test_4006_on_a_send_fails_it_and_ends_the_session_as_expired(
    broker_names: BrokerNames, amqp_url: str, sim_profile: str
) -> None:
    async with e2e_stack(broker_names, amqp_url) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        # The session expired and the bridge missed SessionExpiredEvent (§7): only the 4006 on the next
        # request tells it. Set the state the simulator's expiry would have left, without the event.
        stack.sim_session("s").state = GenesysSessionState.EXPIRED
        late = await client.say("s", "still there?")
        outcome = await events.outcome(late)
        # A traced 4006 names the send; real Genesys sends it untraced, so it only ends the session (§6).
        code = 4006 if sim_profile == "everything-on" else None
        assert (outcome.status, outcome.reason, outcome.genesys_code) == ("failed", "session_ended", code)
        assert (await events.ended("s")).reason == "expired"


async def test_typing_where_the_deployment_disables_it(broker_names: BrokerNames, amqp_url: str) -> None:
    """The deployment's config.json says so: rejected without sending (a 403 when the config is unknown is
    covered in tests/session/test_errors.py)."""
    async with e2e_stack(broker_names, amqp_url, sim_config=quiet_simulator(typing_enabled=False)) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        (started,) = events.of("s", "session.started")
        assert isinstance(started, SessionStarted)
        assert started.features.user_typing is False
        typing = await client.send({"type": "typing.send", "session_id": "s"})
        outcome = await events.outcome(typing)
        assert (outcome.status, outcome.reason, outcome.genesys_code) == ("rejected", "typing_disabled", None)
        said = await client.say("s", "text still works")
        assert (await events.outcome(said)).status == "delivered"
        assert not events.of("s", "session.ended")
        assert all(isinstance(o, CommandOutcome) for o in events.outcomes(typing))


async def test_agent_text_cut_inside_an_emoji_is_published_and_the_session_goes_on(
    broker_names: BrokerNames, amqp_url: str
) -> None:
    # An unpaired surrogate reaches the bridge as a JSON escape (§3.2): published as U+FFFD, not fatal.
    async with e2e_stack(broker_names, amqp_url) as stack:
        client, events = stack.client, stack.client.events
        await client.started("s")
        await stack.sim.agent_say(stack.sim_session("s"), "Your order ships soon \ud83d")
        await events.wait_for(lambda _: bool(events.messages("s")))
        assert [m.text for m in events.messages("s")] == ["Your order ships soon \ufffd"]
        reply = await client.say("s", "thanks")
        assert (await events.outcome(reply)).status == "delivered"
        assert not events.of("s", "session.ended")
