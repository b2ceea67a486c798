"""How a conversation ends, and what the agent side says on the way: the truthful events for each ending.

Virtual time (looptime): the idle timeout and the reorder window run in zero real time.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from genesys_bridge_client.contract import MessageReceived, PresenceReceived, SessionEnded
from tests.session.conftest import running

pytestmark = pytest.mark.looptime


async def test_4007_ends_the_session_as_conversation_lost_and_settles_the_command_in_flight() -> None:
    """§6: Genesys no longer knows the session; its own transport treats 4007 as final."""
    async with running() as h:
        await h.start()
        h.peer.hold_echoes = 1  # the send reaches Genesys, its echo never comes
        saying = asyncio.create_task(h.say("s1", "still there?"))
        await h.peer.wait_received(lambda frames: any(f["action"] == "onMessage" for f in frames))
        h.peer.push_all("string", "Session not found", code=4007, kind="response")  # untraced, as Genesys sends it
        outcome = await saying
        assert (outcome.status, outcome.reason) == ("failed", "session_ended")
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert isinstance(ended, SessionEnded)
        assert ended.reason == "conversation_lost"
        assert h.store.records["s1"].closed
        later = await h.say("s1", "hello?")
        assert later.status == "rejected"
        assert later.reason in ("session_ended", "unknown_session")  # while the actor winds down, then gone


async def test_no_agent_activity_ends_the_session_idle() -> None:
    async with running(session_idle_timeout_s=600.0) as h:
        token = await h.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(500)
        h.peer.agent_say(token, "still here")  # activity moves the deadline
        await h.sink.wait_type("message.received", 1, "s1")
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert isinstance(ended, SessionEnded)
        assert ended.reason == "idle"
        assert loop.time() - started == pytest.approx(1100, abs=1)
        assert h.peer.connections == []  # socket closed, no Clear: the conversation is left to the agent
        assert not any(f.get("message", {}).get("events") for f in h.peer.received if f["action"] == "onMessage")


async def test_an_agent_join_is_published_as_presence() -> None:
    async with running() as h:
        token = await h.start()
        h.peer.push_all(
            "StructuredMessage",
            {
                "id": "join-1",
                "type": "Event",
                "direction": "Outbound",
                "events": [{"eventType": "Presence", "presence": {"type": "Join"}}],
                "originatingEntity": "Human",
            },
        )
        (presence,) = await h.sink.wait_type("presence.received", 1, "s1")
        assert isinstance(presence, PresenceReceived)
        assert (presence.kind, presence.read_only) == ("join", False)
        assert token


async def test_the_agents_last_message_overtaken_by_the_disconnect_is_published_before_the_end() -> None:
    """§10: the last message is in history, but its frame never reaches the socket before the Disconnect."""
    async with running() as h:
        token = await h.start()
        h.peer.agent_say(token, "thanks, bye", live=False)
        h.peer.disconnect(token, read_only=True)
        ended = await h.sink.wait_type("session.ended", 1, "s1")
        kinds = [e.type for e in h.sink.events if e.session_id == "s1"]
        assert kinds.index("message.received") < kinds.index("session.ended")
        (message,) = h.sink.of_type("message.received", "s1")
        assert isinstance(message, MessageReceived)
        assert message.text == "thanks, bye"
        assert ended[0].reason == "agent_disconnected"


async def test_messages_are_published_in_genesys_order_within_the_reorder_window() -> None:
    async with running(reorder_window_s=0.5) as h:
        token = await h.start()
        first = h.peer.agent_say(token, "first", live=False)
        second = h.peer.agent_say(token, "second", live=False)
        later = datetime.fromisoformat(first["channel"]["time"]) + timedelta(seconds=1)
        second["channel"]["time"] = later.isoformat()
        h.peer.push_body(token, second)  # arrives first
        h.peer.push_body(token, first)
        received = await h.sink.wait_type("message.received", 2, "s1")
        assert [e.text for e in received if isinstance(e, MessageReceived)] == ["first", "second"]


async def test_a_clear_answered_with_429_is_not_a_cleared_conversation() -> None:
    """An untraced 429 goes to the last frame written, the Clear: the guest left, nothing was cleared."""
    async with running() as h:
        await h.start()
        h.peer.rate_limit_next = 1
        outcome = await h.end("s1")
        assert outcome.status == "delivered"
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert isinstance(ended, SessionEnded)
        assert ended.reason == "guest_left"
        assert ended.detail is not None
        assert "4029" in ended.detail


async def test_the_idle_timeout_counts_only_while_the_session_is_live() -> None:
    """A reconnect longer than the timeout is not silence from the agent: the count starts again."""
    async with running(session_idle_timeout_s=100.0) as h:
        token = await h.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        h.peer.refuse_connects = 150  # 150 tries, 1 s apart: away longer than the timeout
        h.peer.drop_all()
        await h.sink.wait_type("session.resumed", 1, "s1")
        assert not h.sink.of_type("session.ended", "s1")
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert isinstance(ended, SessionEnded)
        assert ended.reason == "idle"
        assert loop.time() - started > 200  # counted from the resume, not from the start
        assert token
