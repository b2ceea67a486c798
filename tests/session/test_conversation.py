"""The session actor against the in-memory Genesys peer, in virtual time."""

from __future__ import annotations

import pytest

from tests.session.conftest import running

pytestmark = pytest.mark.looptime


async def test_full_conversation() -> None:
    async with running() as h:
        token = await h.start("s1")
        started = h.sink.of_type("session.started", "s1")
        assert len(started) == 1
        assert started[0].new_session is True
        outcome = await h.say("s1", "hello")
        assert outcome.status == "delivered"
        assert outcome.genesys_message_id == h.peer.history[token][-1]["id"]
        h.peer.agent_say(token, "hi, how can I help?")
        (received,) = await h.sink.wait_type("message.received", 1, "s1")
        assert received.text == "hi, how can I help?"
        assert received.direction == "outbound"
        assert received.sender.kind == "agent"
        ended = await h.end("s1")
        assert ended.status == "delivered"
        (end_event,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert end_event.reason == "guest_ended"
        assert end_event.causation_id == ended.command_id
        seqs = [e.seq for e in h.sink.events if e.session_id == "s1"]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)


async def test_transient_publish_failure_is_retried_with_the_same_event() -> None:
    async with running() as h:
        token = await h.start()
        h.sink.fail_next = 2
        body = h.peer.agent_say(token, "eventually")
        (received,) = await h.sink.wait_type("message.received", 1, "s1")
        assert received.genesys_message_id == body["id"]
        assert h.registry.get("s1").record.last_message_id == body["id"]


async def test_events_carry_causation_and_correlation() -> None:
    from genesys_bridge_client.contract import MessageSend

    async with running() as h:
        await h.start()
        command = MessageSend(command_id="c-1", session_id="s1", text="hi", correlation_id="corr-9")
        await h.submit(command, reply_to="amq.rabbitmq.reply-to")
        outcome = await h.sink.wait_outcome("c-1")
        assert (outcome.causation_id, outcome.correlation_id) == ("c-1", "corr-9")
        assert h.sink.reply_to[h.sink.events.index(outcome)] == "amq.rabbitmq.reply-to"
