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
