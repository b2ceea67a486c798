"""AMQP request/reply conventions, owner routing and trace context, end to end through a session.

A standard request/reply client matches the reply on the ``correlation_id`` property and takes the first
message on its ``reply_to`` queue as the answer; a service that names a ``route`` binds only its own
conversations; a command's W3C trace context follows the conversation.
"""

from __future__ import annotations

import pytest

from bridge.ports import TraceContext
from genesys_bridge_client.contract import MessageSend, SessionStart
from tests.session.conftest import DEPLOYMENT, running

pytestmark = pytest.mark.looptime

TRACE_A = TraceContext("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=a")
TRACE_B = TraceContext("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")


@pytest.mark.parametrize("reply_notices", [False, True])
async def test_only_the_settled_outcome_goes_to_reply_to_unless_notices_are_asked_for(reply_notices: bool) -> None:
    async with running() as h:
        await h.start()
        h.peer.rate_limit_next = 1
        command = MessageSend(command_id="rl", session_id="s1", text="patience", reply_notices=reply_notices)
        await h.submit(command, reply_to="my-replies")
        await h.sink.wait_outcome("rl")

        sent = [
            (e.status, to) for e, to in zip(h.sink.events, h.sink.reply_to, strict=True) if e in h.sink.outcomes("rl")
        ]
        assert sent[-1] == ("delivered", "my-replies")
        notice_to = "my-replies" if reply_notices else None
        assert sent[:-1] == [("will_retry", notice_to)]  # always on the event exchange; reply_to only if asked


async def test_outcomes_carry_the_requesters_correlation_id() -> None:
    async with running() as h:
        await h.start()
        command = MessageSend(command_id="m1", session_id="s1", text="hello")
        await h.submit(command, reply_to="my-replies", correlation_id="rpc-1")
        outcome = await h.sink.wait_outcome("m1")
        assert h.sink.correlation_ids[h.sink.events.index(outcome)] == "rpc-1"


async def test_a_route_is_on_every_routing_key_of_its_session() -> None:
    async with running() as h:
        token = await h.start(route="billing")
        await h.say("s1", "hello")
        h.peer.agent_say(token, "hi")
        await h.sink.wait_type("message.received", 1, "s1")
        await h.end("s1")
        await h.sink.wait_type("session.ended", 1, "s1")

        keys = [k for e, k in zip(h.sink.events, h.sink.routing_keys, strict=True) if e.session_id == "s1"]
        assert {k.split(".", 2)[-1] for k in keys} == {f"{DEPLOYMENT}.billing"}
        assert h.store.records["s1"].route == "billing"


async def test_a_second_start_for_a_live_session_id_is_rejected_on_its_own_route() -> None:
    async with running() as h:
        await h.start(route="billing")
        again = SessionStart(
            command_id="other-team", session_id="s1", deployment_id=DEPLOYMENT, region="mypurecloud.com", route="sales"
        )
        await h.submit(again)
        outcome = await h.sink.wait_outcome("other-team")
        assert (outcome.status, outcome.reason) == ("rejected", "session_exists")
        assert h.sink.routing_keys[h.sink.events.index(outcome)].endswith(".sales")  # the asker hears it, not billing


async def test_the_newest_commands_trace_follows_the_sessions_later_events() -> None:
    async with running() as h:
        start = SessionStart(command_id="start-s1", session_id="s1", deployment_id=DEPLOYMENT, region="mypurecloud.com")
        await h.submit(start, trace=TRACE_A)
        await h.sink.wait_outcome("start-s1")
        actor = h.registry.get("s1")
        assert actor is not None
        token = actor.record.token.get_secret_value()

        h.peer.agent_say(token, "first")
        (first,) = await h.sink.wait_type("message.received", 1, "s1")
        assert h.sink.traces[h.sink.events.index(first)] == TRACE_A
        (started,) = h.sink.of_type("session.started", "s1")
        assert h.sink.traces[h.sink.events.index(started)] == TRACE_A

        await h.submit(MessageSend(command_id="m2", session_id="s1", text="hello"), trace=TRACE_B)
        outcome = await h.sink.wait_outcome("m2")
        assert h.sink.traces[h.sink.events.index(outcome)] == TRACE_B
        h.peer.agent_say(token, "second")
        second = (await h.sink.wait_type("message.received", 2, "s1"))[-1]
        assert h.sink.traces[h.sink.events.index(second)] == TRACE_B
        # Kept in the record, so the session's events carry it after a restart too.
        record = h.store.records["s1"]
        assert (record.traceparent, record.tracestate) == (TRACE_B.traceparent, None)
