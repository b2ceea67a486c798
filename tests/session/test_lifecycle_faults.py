"""Inbox age during recovery and reconnects, drain while reconnecting, and one actor's failure contained.

Virtual time (looptime): slow pacing, long outages and drain deadlines run instantly.
"""

from __future__ import annotations

import asyncio

import pytest

from bridge.ports import Envelope
from bridge.session.actor import SessionActor
from bridge.session.registry import CANCEL_GRACE_S
from genesys_bridge_client.contract import MessageSend
from tests.session.conftest import running
from tests.session.fakes import FakeDelivery

pytestmark = pytest.mark.looptime


async def test_paced_recovery_does_not_age_queued_commands_into_overflow() -> None:
    """with resume paced, late sessions connected after inbox_max_age_s and their commands were
    rejected as overflow although they never waited on a connected session."""
    async with running() as h:
        for i in range(3):
            await h.start(f"p{i}")
        await h.registry.drain(10.0)
        records = [h.store.records[f"p{i}"] for i in range(3)]
    async with running(resume_rate_per_s=0.02, inbox_max_age_s=60.0) as h2:  # slots 50 s apart
        h2.peer.known_tokens = h.peer.known_tokens
        h2.peer.history = h.peer.history
        loop = asyncio.get_running_loop()
        before = loop.time()
        await h2.registry.resume(records)
        for n in range(3):  # queued at once, as after an outage; the last session connects 100 s later
            await h2.submit(MessageSend(command_id=f"q{n}", session_id="p2", text=f"queued {n}"))
        for n in range(3):
            outcome = await h2.sink.wait_outcome(f"q{n}")
            assert (outcome.status, outcome.reason) == ("delivered", "ok")
        assert loop.time() - before >= 100.0


async def test_long_reconnect_does_not_age_queued_commands_into_overflow() -> None:
    async with running(inbox_max_age_s=60.0) as h:
        await h.start()
        h.peer.refuse_connects = 200  # ~200 s of outage with the harness's 1 s backoff
        h.peer.drop_all()
        for n in range(3):
            await h.submit(MessageSend(command_id=f"w{n}", session_id="s1", text=f"waiting {n}"))
        for n in range(3):
            outcome = await h.sink.wait_outcome(f"w{n}")
            assert (outcome.status, outcome.reason) == ("delivered", "ok")
        assert h.peer.sent_texts() == [f"waiting {n}" for n in range(3)]


async def test_drain_requeues_a_command_waiting_for_a_reconnect_at_once() -> None:
    """a command waiting in the gate was never woken on stop; the drain always hit its timeout."""
    async with running() as h:
        await h.start()
        h.peer.refuse_connects = 10_000
        h.peer.drop_all()
        waiting = await h.submit(MessageSend(command_id="stuck", session_id="s1", text="waiting"))
        queued = await h.submit(MessageSend(command_id="behind", session_id="s1", text="behind"))
        await asyncio.sleep(5)  # virtual: the session is reconnecting, the command waits for it
        loop = asyncio.get_running_loop()
        before = loop.time()
        await h.registry.drain(60.0)
        assert loop.time() - before < 1.0
        assert waiting.delivery.how == ["requeue"]  # type: ignore[attr-defined]
        assert queued.delivery.how == ["requeue"]  # type: ignore[attr-defined]
        assert not h.sink.outcomes("stuck")
        record = h.store.records["s1"]
        assert (record.state, record.closed) == ("suspended", False)
        # Journalled for the next process: had it reached Genesys, the backfill would recognise it.
        assert list(record.pending_sends.values()) == ["waiting"]
        assert not h.sink.of_type("session.ended", "s1")


class _StuckRequeue(FakeDelivery):
    async def requeue(self) -> None:
        await asyncio.Event().wait()  # a broker that never answers


async def test_drain_after_cancel_is_bounded() -> None:
    """after the drain deadline's cancel, the wait for the actors had no bound."""
    async with running(delivery_timeout_s=600.0) as h:
        await h.start()
        h.peer.swallow_messages = 1
        command = MessageSend(command_id="slow", session_id="s1", text="slow")
        await h.registry.submit(
            Envelope(command=command, delivery=_StuckRequeue(), reply_to=None, received_at=h.clock.monotonic())
        )
        await h.peer.wait_received(lambda r: any(f.get("message", {}).get("text") == "slow" for f in r))
        loop = asyncio.get_running_loop()
        before = loop.time()
        await h.registry.drain(5.0)
        assert loop.time() - before == pytest.approx(5.0 + CANCEL_GRACE_S, abs=0.1)
    # Leaving the registry's block awaits its TaskGroup: the second cancel ended the stuck cleanup.


async def test_failure_in_an_actors_cleanup_is_contained(monkeypatch: pytest.MonkeyPatch) -> None:
    """an exception from an actor's finally failed the registry TaskGroup: every session died."""
    original = SessionActor._settle_leftovers

    async def broken(self: SessionActor) -> None:
        await original(self)
        if self.session_id == "bad":
            raise RuntimeError("bug in cleanup")

    monkeypatch.setattr(SessionActor, "_settle_leftovers", broken)
    async with running() as h:
        await h.start("good")
        await h.start("bad")
        await h.end("bad")
        await h.sink.wait_type("session.ended", 1, "bad")
        assert (await h.say("good", "still here")).status == "delivered"
        assert h.sample("genesys_bridge_session_failures_total", reason="crash") == 1
        assert (await h.say("good", "and still")).status == "delivered"
