"""A command settled by one process and redelivered to the next is answered from the session record, never
run twice; the record's new field survives the journal codec; a start the previous process never announced
is announced by the next."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime

import pytest

from bridge.contract.outcomes import SettledOutcome
from bridge.ports import Envelope
from bridge.recent_outcomes import RECENT_OUTCOMES_KEPT, RecentOutcomes
from bridge.record import SessionRecord
from bridge.store.codec import encode_record, open_record, parse_envelope
from bridge.store.crypto import KeyRing
from bridge.store.memory import MemorySessionStore
from genesys_bridge_client.contract import MessageSend, SessionStart
from tests.session.conftest import DEPLOYMENT, Harness, running
from tests.session.fakes import FakeDelivery

pytestmark = pytest.mark.looptime


class _AckSnoop(FakeDelivery):
    """Records what the store held for the session at the moment of the ack."""

    def __init__(self, store: MemorySessionStore, session_id: str) -> None:
        super().__init__()
        self._store, self._session_id = store, session_id
        self.record_at_ack: SessionRecord | None = None

    async def ack(self) -> None:
        self.record_at_ack = self._store.records[self._session_id]
        await super().ack()


async def _submit_with(h: Harness, command: MessageSend, delivery: FakeDelivery) -> None:
    await h.registry.submit(
        Envelope(command=command, delivery=delivery, reply_to=None, received_at=h.clock.monotonic())
    )


async def test_command_settled_before_a_crash_is_answered_not_resent_after_restart() -> None:
    command = MessageSend(command_id="once", session_id="s1", text="exactly once")
    async with running() as h:
        token = await h.start()
        snoop = _AckSnoop(h.store, "s1")
        await _submit_with(h, command, snoop)
        original = await h.sink.wait_outcome("once")
        await snoop.settled.wait()
        # Saved before the ack: in the same snapshot the send is no longer journalled as pending.
        assert snoop.record_at_ack is not None
        kept = list(snoop.record_at_ack.recent_outcomes)[-1]
        assert (kept.command_id, kept.status, kept.genesys_message_id) == (
            "once",
            "delivered",
            original.genesys_message_id,
        )
        assert snoop.record_at_ack.pending_sends == {}
        record = h.store.records["s1"]
        await h.registry.drain(10.0)
    # The ack never reached the broker (a crash): the next process gets the command again.
    async with running() as h2:
        h2.peer.known_tokens = h.peer.known_tokens
        h2.peer.history = h.peer.history
        await h2.registry.resume([record])
        redelivered = await h2.submit(command)
        await redelivered.delivery.settled.wait()  # type: ignore[attr-defined]
        (again,) = h2.sink.outcomes("once")
        assert (again.status, again.reason, again.genesys_message_id) == (
            "delivered",
            "ok",
            original.genesys_message_id,
        )
        assert redelivered.delivery.how == ["ack"]  # type: ignore[attr-defined]
        assert h2.peer.sent_texts() == []  # not sent twice
        assert [m["text"] for m in h.peer.history[token]].count("exactly once") == 1
        assert h2.sample("genesys_bridge_commands_total", type="message.send", status="duplicate", reason="ok") == 1


async def test_recent_outcomes_are_bounded() -> None:
    async with running(send_rate_per_s=1000.0, send_burst=1000) as h:
        await h.start()
        for i in range(RECENT_OUTCOMES_KEPT + 5):
            await h.say("s1", f"m{i}", command_id=f"m{i}")
        kept = h.store.records["s1"].recent_outcomes
        assert len(kept) == RECENT_OUTCOMES_KEPT
        assert list(kept)[-1].command_id == f"m{RECENT_OUTCOMES_KEPT + 4}"


def test_recent_outcomes_survive_the_journal_codec() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    record = SessionRecord(
        session_id="s1",
        token="secret-token",  # type: ignore[arg-type]
        deployment_id="d",
        region="mypurecloud.com",
        recent_outcomes=(
            SettledOutcome(
                command_id="c1",
                command_type="message.send",
                status="delivered",
                reason="ok",
                genesys_message_id="g1",
            ),
            SettledOutcome(command_id="c2", command_type="message.send", status="failed", reason="timeout"),
        ),
        created_at=now,
        updated_at=now,
    )
    keys = KeyRing.of(base64.urlsafe_b64encode(b"k" * 32).decode())
    envelope = parse_envelope(encode_record(record, keys, written_at=now))
    assert envelope.kind == "session"
    opened = open_record(envelope, keys)  # type: ignore[arg-type]
    assert opened.recent_outcomes == record.recent_outcomes
    assert opened == record


def test_records_written_before_the_field_existed_still_load() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    old = SessionRecord.model_validate(
        {"session_id": "s1", "token": "t", "deployment_id": "d", "region": "r", "created_at": now, "updated_at": now}
    )
    assert old.recent_outcomes == RecentOutcomes()


@pytest.mark.parametrize("reached_genesys", [True, False], ids=["configured", "never-configured"])
async def test_a_start_its_owner_never_announced_is_announced_by_the_next_one(reached_genesys: bool) -> None:
    """The previous owner stopped mid-start (a hand-off, a crash) after journalling the session and before
    publishing ``session.started``: the next owner resumes it and publishes ``session.started``, never a
    ``session.resumed`` for a session the integrator never saw start. If the start never reached Genesys,
    the new session Genesys makes is that start's, not a lost conversation. The redelivered start is
    answered."""
    start = SessionStart(command_id="start-s1", session_id="s1", deployment_id=DEPLOYMENT, region="mypurecloud.com")
    async with running() as h:
        await h.start("s1", command_id=start.command_id)
        assert h.store.records["s1"].unannounced_start is None, "announced, and saved with the start's outcome"
        # What the journal held while the start was still in flight.
        record = h.store.records["s1"].model_copy(
            update={"unannounced_start": "new", "recent_outcomes": RecentOutcomes()}
        )
        await h.registry.drain(10.0)
    async with running() as h2:
        if reached_genesys:
            h2.peer.known_tokens = h.peer.known_tokens
            h2.peer.history = h.peer.history
        await h2.registry.resume([record])
        (started,) = await h2.sink.wait_type("session.started", session_id="s1")
        assert started.new_session is True
        await h2.registry.recovered()
        assert h2.sink.of_type("session.resumed", session_id="s1") == []
        assert h2.sink.of_type("session.ended", session_id="s1") == []
        assert h2.registry.get("s1") is not None
        assert h2.registry.get("s1").record.unannounced_start is None  # type: ignore[union-attr]
        redelivered = await h2.submit(start)
        outcome = await h2.sink.wait_outcome(start.command_id)
        assert (outcome.status, outcome.reason) == ("delivered", "ok"), outcome
        await redelivered.delivery.settled.wait()  # type: ignore[attr-defined]


async def test_a_resume_counts_the_previous_owners_connects_against_the_window() -> None:
    """The journal carries each session's connects of the last minute: a next process resuming it within
    that minute waits for the deployment's window, so a crash loop cannot exceed Genesys' limit."""
    async with running(genesys_connects_per_min=1) as h:
        await h.start("s1")
        record = h.store.records["s1"]
        assert len(record.recent_connects) == 1
        await h.registry.drain(10.0)
    loop = asyncio.get_running_loop()
    async with running(genesys_connects_per_min=1) as h2:
        h2.peer.known_tokens = h.peer.known_tokens
        h2.peer.history = h.peer.history
        began = loop.time()  # virtual: next to no wall time passed since that connect
        await h2.registry.resume([record])
        await h2.sink.wait_type("session.resumed", session_id="s1")
        assert loop.time() - began == pytest.approx(60.0, abs=1.0)  # that connect's minute, first


async def test_a_start_redelivered_long_after_it_settled_is_answered_not_run() -> None:
    """Its outcome may have left the record's bounded tail of outcomes: a full tail means it settled long
    ago, so it is answered, and its initial message is not sent again."""
    start = SessionStart(
        command_id="start-s1",
        session_id="s1",
        deployment_id=DEPLOYMENT,
        region="mypurecloud.com",
        initial_message="hello once",
    )
    async with running(send_rate_per_s=1000.0, send_burst=1000) as h:
        await h.start("s1", command_id=start.command_id, initial_message="hello once")
        for i in range(RECENT_OUTCOMES_KEPT):
            await h.say("s1", f"m{i}", command_id=f"m{i}")
        record = h.store.records["s1"]
        assert start.command_id not in {o.command_id for o in record.recent_outcomes}
        await h.registry.drain(10.0)
    async with running() as h2:
        h2.peer.known_tokens = h.peer.known_tokens
        h2.peer.history = h.peer.history
        await h2.registry.resume([record])
        await h2.sink.wait_type("session.resumed", session_id="s1")
        await h2.submit(start)
        outcome = await h2.sink.wait_outcome(start.command_id)
        assert (outcome.status, outcome.detail) == ("delivered", "the session is live (resumed)"), outcome
        assert h2.peer.sent_texts() == []
