"""Authenticated sessions, autostart and journey context, through RabbitMQ, the bridge and the simulator.

The simulator plays a deployment with authentication on: it exchanges codes for JWTs, refuses actions on a
connection whose JWT expired (401), refreshes, revokes, and logs customers out from "another device".
"""

from __future__ import annotations

from typing import Any

import pytest

from bridge.simulator import Session
from genesys_bridge_client.contract.events import MessageReceived
from tests.conftest import BrokerNames
from tests.e2e.stack import Stack, e2e_stack, quiet_simulator

pytestmark = pytest.mark.timeout(40)

DEPLOYMENT = "0f4f1d2a-5b1e-4e0e-9f3a-2f5d8c1a7b10"
CODE = "SplxlOBeZQQYbYS6WxSbIA"
AUTH = {"code": CODE, "redirect_uri": "https://shop.example.com/callback"}


async def _start(stack: Stack, session_id: str, **extra: Any) -> Session:
    """Start an authenticated session, wait for its delivered outcome, return the simulator's session."""
    outcome = await stack.client.started(session_id, deployment_id=DEPLOYMENT, auth=AUTH, **extra)
    assert outcome.detail.startswith("authenticated session started"), outcome
    return stack.sim_session(session_id)


async def test_exchange_configure_and_a_conversation(broker_names: BrokerNames, amqp_url: str) -> None:
    journey = {"customer_id": "c-77", "customer_session_id": "web-5521", "triggering_action_id": "act-1"}
    async with e2e_stack(broker_names, amqp_url, sim_config=quiet_simulator(auth_enabled=True)) as stack:
        events = stack.client.events
        session = await _start(stack, "a1", journey_context=journey)
        assert session.authenticated
        assert session.journey_context == {
            "customer": {"id": "c-77", "idType": "cookie"},
            "customerSession": {"id": "web-5521", "type": "web"},
            "triggeringAction": {"id": "act-1"},
        }
        said = await stack.client.say("a1", "hello as a known customer")
        assert (await events.outcome(said)).status == "delivered"
        await stack.sim.agent_say(session, "hi Jane")
        await events.wait_for(lambda _: any(m.text == "hi Jane" for m in events.messages("a1")))
        record = stack.bridge.sessions.get("a1")
        assert record is not None
        assert record.record.authenticated
        assert record.record.auth_refresh_token is not None


async def test_a_jwt_that_expires_mid_conversation_is_renewed_and_nothing_is_lost(
    broker_names: BrokerNames, amqp_url: str
) -> None:
    async with e2e_stack(broker_names, amqp_url, sim_config=quiet_simulator(auth_enabled=True)) as stack:
        events = stack.client.events
        session = await _start(stack, "a2")
        await stack.sim.expire_jwts(session)  # the socket's JWT is now refused: 401 to the next message
        said = await stack.client.say("a2", "sent after the JWT expired")
        outcome = await events.outcome(said)
        assert outcome.status == "delivered", outcome
        texts = [r.body.get("text") for r in stack.sim.received(stack.sim_session("a2"))]
        assert texts.count("sent after the JWT expired") == 1  # refused once (401), then delivered once
        assert not events.of("a2", "session.ended")


async def test_a_refresh_that_fails_ends_the_session_auth_failed(broker_names: BrokerNames, amqp_url: str) -> None:
    async with e2e_stack(broker_names, amqp_url, sim_config=quiet_simulator(auth_enabled=True)) as stack:
        events = stack.client.events
        session = await _start(stack, "a3")
        await stack.sim.fail_next_refresh(10)
        await stack.sim.expire_jwts(session)
        said = await stack.client.say("a3", "nobody will read this")
        outcome = await events.outcome(said)
        assert (outcome.status, outcome.reason) == ("failed", "auth_failed")
        ended = await events.ended("a3")
        assert ended.reason == "auth_failed"
        assert ended.detail is not None
        assert "401" in ended.detail


async def test_a_refused_code_is_a_failed_start_with_the_status(broker_names: BrokerNames, amqp_url: str) -> None:
    async with e2e_stack(broker_names, amqp_url, sim_config=quiet_simulator(auth_enabled=True)) as stack:
        await stack.sim.refuse_auth_code(CODE)
        start = await stack.client.start("a4", deployment_id=DEPLOYMENT, auth=AUTH)
        outcome = await stack.client.events.outcome(start)
        assert (outcome.status, outcome.reason, outcome.genesys_code) == ("failed", "auth_failed", 401)
        assert (await stack.client.events.ended("a4")).reason == "auth_failed"
        assert stack.sim.sessions() == []  # never configured: nothing reached the socket


async def test_logout_by_command_revokes_and_ends_logged_out(broker_names: BrokerNames, amqp_url: str) -> None:
    async with e2e_stack(broker_names, amqp_url, sim_config=quiet_simulator(auth_enabled=True)) as stack:
        events = stack.client.events
        await _start(stack, "a5")
        logout = await stack.client.send({"type": "session.logout", "session_id": "a5"})
        outcome = await events.outcome(logout)
        assert (outcome.status, outcome.reason) == ("delivered", "ok")
        assert (await events.ended("a5")).reason == "logged_out"


async def test_logout_from_another_device_ends_logged_out(broker_names: BrokerNames, amqp_url: str) -> None:
    async with e2e_stack(broker_names, amqp_url, sim_config=quiet_simulator(auth_enabled=True)) as stack:
        session = await _start(stack, "a6")
        assert await stack.sim.logout(session) >= 1
        assert (await stack.client.events.ended("a6")).reason == "logged_out"


async def test_logout_of_an_anonymous_session_is_rejected(broker_names: BrokerNames, amqp_url: str) -> None:
    async with e2e_stack(broker_names, amqp_url) as stack:
        await stack.client.started("a7", deployment_id=DEPLOYMENT)
        logout = await stack.client.send({"type": "session.logout", "session_id": "a7"})
        outcome = await stack.client.events.outcome(logout)
        assert (outcome.status, outcome.reason) == ("rejected", "not_authenticated")
        assert not stack.client.events.of("a7", "session.ended")


async def test_an_authenticated_token_cannot_go_anonymous(broker_names: BrokerNames, amqp_url: str) -> None:
    """4017: a resume_token that was authenticated, adopted anonymously, is a clear auth_failed."""
    async with e2e_stack(broker_names, amqp_url, sim_config=quiet_simulator(auth_enabled=True)) as stack:
        session = await _start(stack, "a8")
        await stack.client.events.outcome(await stack.client.send({"type": "session.end", "session_id": "a8"}))
        start = await stack.client.start("a8-again", deployment_id=DEPLOYMENT, resume_token=session.token)
        outcome = await stack.client.events.outcome(start)
        assert outcome.status == "failed"
        assert outcome.genesys_code == 4017


@pytest.mark.parametrize("allowed", [True, False])
async def test_autostart_greets_before_the_first_guest_message(
    broker_names: BrokerNames, amqp_url: str, allowed: bool
) -> None:
    config = quiet_simulator(autostart=allowed, agent_script=True, agent_greeting="Welcome! How can I help?")
    async with e2e_stack(broker_names, amqp_url, sim_config=config) as stack:
        events = stack.client.events
        outcome = await stack.client.started("a9", deployment_id=DEPLOYMENT, autostart=True)
        if allowed:
            assert "autostart: Join sent" in outcome.detail
            await events.wait_for(lambda _: any(m.text == "Welcome! How can I help?" for m in events.messages("a9")))
            [greeting] = [m for m in events.messages("a9") if isinstance(m, MessageReceived)]
            assert greeting.text == "Welcome! How can I help?"  # before the customer wrote anything
        else:
            assert "autostart skipped: the deployment has autostart off" in outcome.detail
            assert not [r for r in stack.sim.received(stack.sim_session("a9")) if r.type == "Event"]
