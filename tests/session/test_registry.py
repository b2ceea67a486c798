"""The registry: admission checks, idempotency, overflow, ordering, isolation, drain and restart."""

from __future__ import annotations

import asyncio

import pytest

from bridge.record import SessionRecord
from genesys_bridge_client.contract import MessageSend, SessionStart, TypingSend
from tests.session.conftest import DEPLOYMENT, running
from tests.session.fakes import FakeDelivery

pytestmark = pytest.mark.looptime


def start(session_id: str = "s1", command_id: str = "st-1", **kw: object) -> SessionStart:
    kw.setdefault("deployment_id", DEPLOYMENT)
    kw.setdefault("region", "mypurecloud.com")
    return SessionStart(command_id=command_id, session_id=session_id, **kw)  # type: ignore[arg-type]


async def test_repeated_command_id_replays_the_original_outcome() -> None:
    async with running() as h:
        await h.start()
        first = await h.say("s1", "once", command_id="dup-1")
        again = await h.submit(MessageSend(command_id="dup-1", session_id="s1", text="once"), reply_to="replies")
        await again.delivery.settled.wait()  # type: ignore[attr-defined]
        outcomes = h.sink.outcomes("dup-1")
        assert len(outcomes) == 2
        assert outcomes[1] == first  # the original event, again
        assert h.sink.reply_to[-1] == "replies"
        assert again.delivery.how == ["ack"]  # type: ignore[attr-defined]
        assert h.peer.sent_texts().count("once") == 1


async def test_in_flight_duplicate_runs_once() -> None:
    async with running() as h:
        await h.start()
        h.sink.block()
        one = await h.submit(MessageSend(command_id="twice", session_id="s1", text="only once"))
        two = await h.submit(MessageSend(command_id="twice", session_id="s1", text="only once"))
        h.sink.unblock()
        await one.delivery.settled.wait()  # type: ignore[attr-defined]
        await two.delivery.settled.wait()  # type: ignore[attr-defined]
        assert h.peer.sent_texts().count("only once") == 1
        assert [o.status for o in h.sink.outcomes("twice")] == ["delivered", "delivered"]


async def test_unknown_session_is_rejected_and_dead_lettered() -> None:
    async with running() as h:
        env = await h.submit(MessageSend(command_id="x", session_id="nobody", text="hi"))
        (outcome,) = h.sink.outcomes("x")
        assert (outcome.status, outcome.reason, outcome.seq) == ("rejected", "unknown_session", 0)
        delivery = env.delivery
        assert isinstance(delivery, FakeDelivery)
        assert delivery.how == ["dead_letter"]
        assert delivery.dead_letter_reason == "unknown_session"


async def test_start_checks() -> None:
    async with running(allowed_deployments=[DEPLOYMENT], max_sessions=1) as h:
        await h.submit(start(command_id="a", deployment_id="other-deployment"))
        await h.submit(start(command_id="b", region="nowhere.invalid"))
        assert h.sink.outcomes("a")[0].reason == "deployment_not_allowed"
        assert h.sink.outcomes("b")[0].reason == "unknown_region"
        await h.start("s1", command_id="c")
        await h.submit(start("s1", command_id="d"))
        assert h.sink.outcomes("d")[0].reason == "session_exists"
        await h.submit(start("s2", command_id="e"))
        assert h.sink.outcomes("e")[0].reason == "too_many_sessions"
        # the same start again is answered from the cache, not refused
        await h.submit(start("s1", command_id="c"))
        assert [o.status for o in h.sink.outcomes("c")] == ["delivered", "delivered"]


async def test_full_inbox_overflows_without_blocking() -> None:
    async with running(inbox_size=3) as h:
        await h.start()
        h.peer.swallow_messages = 1  # m0 waits for an echo that never comes: the inbox fills up
        await h.submit(MessageSend(command_id="m0", session_id="s1", text="m0"))
        await h.peer.wait_received(lambda r: any(f.get("message", {}).get("text") == "m0" for f in r))
        for i in range(1, 5):
            await h.submit(MessageSend(command_id=f"m{i}", session_id="s1", text=f"m{i}"))
        assert (await h.sink.wait_outcome("m4")).reason == "overflow"
        assert (await h.sink.wait_outcome("m0")).reason == "timeout"
        for i in range(1, 4):
            assert (await h.sink.wait_outcome(f"m{i}")).status == "delivered"


async def test_command_too_old_in_inbox_overflows() -> None:
    async with running(inbox_max_age_s=5.0) as h:
        await h.start()
        await asyncio.sleep(30)  # virtual time: the session has been caught up for a while
        loop = asyncio.get_running_loop()
        env = h.env(MessageSend(command_id="old", session_id="s1", text="old"), received_at=loop.time() - 10)
        await h.registry.submit(env)
        outcome = await h.sink.wait_outcome("old")
        assert (outcome.status, outcome.reason) == ("rejected", "overflow")


async def test_per_session_order_is_kept() -> None:
    async with running() as h:
        token = await h.start()
        ids = [f"o{i}" for i in range(20)]
        for command_id in ids:
            await h.submit(MessageSend(command_id=command_id, session_id="s1", text=command_id))
        await h.sink.wait_outcome(ids[-1])
        assert h.peer.sent_texts() == ids
        assert [m["text"] for m in h.peer.history[token]] == ids
        outcome_order = [e.command_id for e in h.sink.of_type("command.outcome", "s1") if e.command_id in ids]
        assert outcome_order == ids


async def test_busy_session_does_not_slow_the_others() -> None:
    async with running(inbox_size=128) as h:
        await h.start("busy")
        for i in range(50):
            await h.start(f"calm-{i}")
        loop = asyncio.get_running_loop()
        for i in range(100):
            await h.submit(MessageSend(command_id=f"b{i}", session_id="busy", text=f"b{i}"))
        before = loop.time()
        for i in range(50):
            await h.submit(MessageSend(command_id=f"c{i}", session_id=f"calm-{i}", text="hello"))
        for i in range(50):
            await h.sink.wait_outcome(f"c{i}")
        assert loop.time() - before < 0.01  # the calm sessions do not wait behind the busy one
        assert not h.sink.outcomes("b99")  # the backlog drains at the budget's pace
        await h.sink.wait_outcome("b99")
        assert loop.time() - before == pytest.approx(49.0, abs=0.5)  # 2 burst + 98 at 2/s


async def test_one_failing_session_does_not_disturb_the_others() -> None:
    async with running() as h:
        await h.start("good")
        bad_token = await h.start("bad")

        async def broken_history(*args: object, **kwargs: object) -> object:
            raise RuntimeError("bug in the history client")

        h.history.fetch_history = broken_history  # type: ignore[method-assign]
        for conn in list(h.peer.connections):
            if conn is h.peer.connections[-1]:
                conn.drop()  # only "bad" reconnects and hits the bug
        (ended,) = await h.sink.wait_type("session.ended", 1, "bad")
        assert ended.reason == "failed"
        # The exception type only: its text (which may carry anything) goes to the log, not into events.
        assert ended.detail == "internal error: RuntimeError"
        assert h.sample("genesys_bridge_session_failures_total", reason="crash") == 1
        assert (await h.say("good", "still fine")).status == "delivered"
        assert bad_token


async def test_drain_finishes_in_flight_requeues_queued_and_never_ends_the_session() -> None:
    async with running(delivery_timeout_s=30.0) as h:
        await h.start()
        h.peer.swallow_messages = 1  # the first message waits for its echo
        first = await h.submit(MessageSend(command_id="in-flight", session_id="s1", text="slow"))
        await h.peer.wait_received(lambda r: any(f.get("message", {}).get("text") == "slow" for f in r))
        queued = [await h.submit(MessageSend(command_id=f"q{i}", session_id="s1", text=f"q{i}")) for i in range(3)]
        await h.registry.drain(60.0)
        assert first.delivery.how == ["ack"]  # type: ignore[attr-defined]
        assert h.sink.outcomes("in-flight")[0].reason == "timeout"
        assert all(q.delivery.how == ["requeue"] for q in queued)  # type: ignore[attr-defined]
        actions = {f["action"] for f in h.peer.received}
        assert "closeSession" not in actions
        assert not any(f.get("message", {}).get("events") for f in h.peer.received if f["action"] == "onMessage")
        assert not h.sink.of_type("session.ended", "s1")
        record = h.store.records["s1"]
        assert (record.state, record.closed) == ("suspended", False)
        late = await h.submit(TypingSend(command_id="late", session_id="s1"))
        assert late.delivery.how == ["requeue"]  # type: ignore[attr-defined]


async def test_drain_timeout_cancels_and_requeues_the_in_flight_command() -> None:
    async with running(delivery_timeout_s=300.0) as h:
        await h.start()
        h.peer.swallow_messages = 1
        first = await h.submit(MessageSend(command_id="slow", session_id="s1", text="slow"))
        await h.peer.wait_received(lambda r: any(f.get("message", {}).get("text") == "slow" for f in r))
        await h.registry.drain(5.0)
        assert first.delivery.how == ["requeue"]  # type: ignore[attr-defined]
        assert len(h.registry) == 0


async def test_resume_after_restart_backfills_and_continues() -> None:
    async with running() as h:
        token = await h.start()
        h.peer.agent_say(token, "seen before the restart")
        await h.sink.wait_type("message.received", 1, "s1")
        await h.registry.drain(10.0)
        record = h.store.records["s1"]
    assert isinstance(record, SessionRecord)
    async with running() as h2:
        h2.peer.history = h.peer.history
        h2.peer.known_tokens = h.peer.known_tokens
        h2.peer.agent_say(token, "while the bridge was down", live=False)
        await h2.registry.resume([record])
        (resumed,) = await h2.sink.wait_type("session.resumed", 1, "s1")
        assert (resumed.cause, resumed.missed_messages) == ("restart", 1)
        (message,) = await h2.sink.wait_type("message.received", 1, "s1")
        assert message.text == "while the bridge was down"
        assert resumed.seq > record.seq - 64  # numbering continues above the reserved block
        assert min(e.seq for e in h2.sink.events if e.session_id == "s1") > max(
            e.seq for e in h.sink.events if e.session_id == "s1"
        )
        assert (await h2.say("s1", "hello again")).status == "delivered"
        configure = next(f for f in h2.peer.received if f["action"] == "configureSession")
        assert configure["token"] == token


async def test_resume_that_comes_back_new_is_conversation_lost() -> None:
    async with running() as h:
        await h.start()
        await h.registry.drain(10.0)
        record = h.store.records["s1"]
    async with running() as h2:  # this peer has never seen the token: newSession:true
        await h2.registry.resume([record])
        (ended,) = await h2.sink.wait_type("session.ended", 1, "s1")
        assert ended.reason == "conversation_lost"
        assert h2.store.records["s1"].closed


async def test_sessions_gauge_follows_states() -> None:
    async with running() as h:
        await h.start("a")
        await h.start("b")
        assert h.sample("genesys_bridge_sessions", state="active") == 2
        await h.end("a")
        await h.sink.wait_type("session.ended", 1, "a")
        await asyncio.sleep(0.1)
        assert h.sample("genesys_bridge_sessions", state="active") == 1
        assert h.sample("genesys_bridge_sessions", state="ending") == 0


async def test_redelivered_start_of_a_resumed_session_is_answered_not_refused() -> None:
    async with running() as h:
        await h.start("s1", command_id="boot-start")
        await h.registry.drain(10.0)
        record = h.store.records["s1"]
    async with running() as h2:
        h2.peer.known_tokens = h.peer.known_tokens
        h2.peer.history = h.peer.history
        await h2.registry.resume([record])
        await h2.sink.wait_type("session.resumed", 1, "s1")
        await h2.submit(start("s1", command_id="boot-start"))
        outcome = await h2.sink.wait_outcome("boot-start")
        assert (outcome.status, outcome.reason) == ("delivered", "ok")


async def test_resume_registers_every_session_at_once_and_paces_connects() -> None:
    async with running() as h:
        for i in range(5):
            await h.start(f"p{i}")
        await h.registry.drain(10.0)
        records = [h.store.records[f"p{i}"] for i in range(5)]
    async with running(resume_rate_per_s=1.0) as h2:
        h2.peer.known_tokens = h.peer.known_tokens
        h2.peer.history = h.peer.history
        loop = asyncio.get_running_loop()
        before = loop.time()
        await h2.registry.resume(records)
        assert loop.time() == before  # registering does not wait for the pacing
        assert len(h2.registry) == 5
        await h2.submit(MessageSend(command_id="early", session_id="p0", text="first one back"))
        outcome = await h2.sink.wait_outcome("early")
        assert outcome.status == "delivered"
        assert loop.time() - before < 1.0
        await h2.sink.wait_type("session.resumed", 5)
        assert loop.time() - before == pytest.approx(4.0, abs=0.1)  # slots 1 s apart
        assert h2.sample("genesys_bridge_recovery_pending_sessions") == 0


async def test_send_in_flight_at_a_crash_is_not_sent_twice_after_restart() -> None:
    async with running(delivery_timeout_s=300.0) as h:
        token = await h.start()
        h.peer.hold_echoes = 1  # Genesys has it; the bridge dies before the echo
        command = MessageSend(command_id="only-once", session_id="s1", text="only once, please")
        first = await h.submit(command)
        await h.peer.wait_received(lambda r: any(f.get("message", {}).get("text") == "only once, please" for f in r))
        record = h.store.records["s1"]
        assert list(record.pending_sends.values()) == ["only once, please"]
        await h.registry.drain(1.0)  # the drain deadline cancels the actor, as a crash would
        assert first.delivery.how == ["requeue"]  # type: ignore[attr-defined]
    async with running() as h2:
        h2.peer.known_tokens = h.peer.known_tokens
        h2.peer.history = h.peer.history
        await h2.registry.resume([record])
        await h2.submit(command)  # the broker redelivers it
        outcome = await h2.sink.wait_outcome("only-once")
        assert outcome.status == "delivered"
        assert outcome.genesys_message_id == h.peer.history[token][-1]["id"]
        assert h2.peer.sent_texts() == []  # not sent again
        assert not h2.sink.of_type("message.received", "s1")  # nor published back as an inbound message
        assert h2.store.records["s1"].pending_sends == {}


async def test_resume_that_comes_back_new_after_the_known_expiry_is_expired() -> None:
    async with running() as h:
        await h.start()
        await h.registry.drain(10.0)
        record = h.store.records["s1"]
    # Genesys answers an expired token with a fresh session (§4.1); the record's expiry tells it apart.
    past = record.updated_at.replace(year=record.updated_at.year - 1)
    expired = record.model_copy(update={"expires_at": past})
    async with running() as h2:
        await h2.registry.resume([expired])
        (ended,) = await h2.sink.wait_type("session.ended", 1, "s1")
        assert ended.reason == "expired"
        assert h2.store.records["s1"].closed


async def test_configured_session_keeps_genesys_expiry_in_its_record() -> None:
    async with running() as h:
        await h.start()
        record = h.store.records["s1"]
        assert record.genesys_ttl_s == 259_200
        assert record.expires_at is not None
        assert (record.expires_at - record.created_at).total_seconds() >= 259_200 - 1
