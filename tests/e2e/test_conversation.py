"""A full conversation through RabbitMQ, the bridge and the simulator, as an integrator sees it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import aio_pika
import pytest

from genesys_bridge_client.contract.content import QuickReplyPart
from genesys_bridge_client.contract.events import CommandOutcome, Event, MessageReceived, SessionEnded, SessionStarted
from tests.conftest import BrokerNames
from tests.e2e.stack import e2e_stack, quiet_simulator

pytestmark = pytest.mark.timeout(30)

DEPLOYMENT = "0f4f1d2a-5b1e-4e0e-9f3a-2f5d8c1a7b10"


def _has_quick_replies(event: Event) -> bool:
    return isinstance(event, MessageReceived) and any(isinstance(p, QuickReplyPart) for p in event.parts)


async def test_full_conversation(broker_names: BrokerNames, amqp_url: str) -> None:
    # The scripted bot answers keywords (§12). A send burst of 4 (and no simulated rate limit) keeps the
    # customer's typing, right after two messages, from being dropped as typing_coalesced without waiting.
    config = quiet_simulator(agent_script=True, message_rate_per_s=None)
    async with e2e_stack(broker_names, amqp_url, sim_config=config, send_burst=4) as stack:
        client, events = stack.client, stack.client.events
        sid = "conv-1"

        start = await client.send(
            {
                "type": "session.start",
                "session_id": sid,
                "correlation_id": "req-981",
                "deployment_id": DEPLOYMENT,
                "region": "mypurecloud.com",
                "custom_attributes": {"order_id": "A-991"},
            },
            reply_to=client.reply_to,
        )
        assert (await events.outcome(start)).status == "delivered"
        await events.wait_for(lambda _: bool(events.of(sid, "session.started")))
        started = events.of(sid, "session.started")[0]
        assert isinstance(started, SessionStarted)
        assert started.deployment_id == DEPLOYMENT
        assert started.new_session

        hello = await client.say(sid, "Hi, my order has not arrived.")
        delivered = await events.outcome(hello)
        assert delivered.status == "delivered"
        assert delivered.reason == "ok"
        assert delivered.genesys_message_id
        await events.wait_for(
            lambda _: any(m.text == "You said: Hi, my order has not arrived." for m in events.messages(sid))
        )

        await client.say(sid, "Can I have quick options?")
        await events.wait_for(lambda _: any(_has_quick_replies(m) for m in events.messages(sid)))
        offer = next(m for m in events.messages(sid) if _has_quick_replies(m))
        choice = next(p for p in offer.parts if isinstance(p, QuickReplyPart))

        # The agent types; then the customer does.
        session = stack.sim_session(sid)
        await stack.sim.agent_typing(session, duration_ms=3000)
        await events.wait_for(lambda _: bool(events.of(sid, "typing.received")))
        typing = await client.send({"type": "typing.send", "session_id": sid})
        typed = await events.outcome(typing)
        if started.features.user_typing:
            assert (typed.status, typed.reason) == ("delivered", "ok"), typed.detail
        else:  # real deployments do not show the guest's typing unless turned on: never sent
            assert (typed.status, typed.reason) == ("rejected", "typing_disabled"), typed.detail

        button = await client.send(
            {
                "type": "message.send",
                "session_id": sid,
                "button_response": {
                    "type": "quick_reply",
                    "text": choice.text,
                    "payload": choice.payload,
                    "originating_message_id": offer.genesys_message_id,
                },
            }
        )
        assert (await events.outcome(button)).status == "delivered"
        chose = f"You chose: {choice.text} ({choice.payload})"
        await events.wait_for(lambda _: any(m.text == chose for m in events.messages(sid)))

        end = await client.send({"type": "session.end", "session_id": sid})
        assert (await events.outcome(end)).status == "delivered"
        ended = await events.ended(sid)
        # Clear is off on real deployments unless turned on: the guest leaves, the agent keeps the conversation.
        assert ended.reason == ("guest_ended" if started.features.clear else "guest_left")

        # What Genesys saw: the attributes with the first message, the button response, the typing.
        received = stack.sim.received(session)
        texts = [r.text for r in received if r.text]
        assert texts[:2] == ["Hi, my order has not arrived.", "Can I have quick options?"]
        assert received[0].custom_attributes == {"order_id": "A-991"}
        sent_typing = any(r.type == "Event" and r.events and r.events[0].get("eventType") == "Typing" for r in received)
        assert sent_typing == bool(started.features.user_typing)
        assert any(
            item.get("contentType") == "ButtonResponse" and item["buttonResponse"]["payload"] == choice.payload
            for r in received
            for item in r.content
        )

        # Every event of the session: contract AMQP properties and the routing key.
        mine = [(raw, e) for raw, e in zip(events.raw, events.events, strict=True) if e.session_id == sid]
        assert mine
        for (routing_key, props, body), event in mine:
            assert routing_key == f"{event.type}.{DEPLOYMENT}"
            assert props["message_id"] == event.event_id
            assert props["type"] == event.type
            assert props["content_type"] == "application/json"
            assert props["delivery_mode"] == aio_pika.DeliveryMode.PERSISTENT
            assert isinstance(props["timestamp"], datetime)
            # AMQP timestamps have whole seconds.
            assert abs(props["timestamp"].replace(tzinfo=UTC) - event.occurred_at).total_seconds() < 1.5
            assert json.loads(body)["event_id"] == event.event_id
            if event.causation_id == start:
                assert props["correlation_id"] == "req-981"
            elif event.causation_id:
                assert props["correlation_id"] == event.causation_id
        seqs = [e.seq for _, e in mine if e.seq]
        assert seqs == sorted(seqs), "per-session seq is monotonic in publish order"
        assert len(set(seqs)) == len(seqs)

        # reply_to got the start command's outcome too.
        await client.replies.wait_for(lambda got: any(isinstance(e, CommandOutcome) for e in got))
        (reply,) = client.replies.events
        assert isinstance(reply, CommandOutcome)
        assert reply.command_id == start
        assert reply.status == "delivered"
        assert isinstance(ended, SessionEnded)
