"""A command settled by one process and redelivered to the next is answered from the session record, never
run twice; the record's new field survives the journal codec."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from bridge.contract.outcomes import SettledOutcome
from bridge.ports import Envelope
from bridge.record import RECENT_OUTCOMES_KEPT, SessionRecord
from bridge.store.codec import encode_record, open_record, parse_envelope
from bridge.store.crypto import KeyRing
from bridge.store.memory import MemorySessionStore
from genesys_bridge_client.contract import MessageSend
from tests.session.conftest import Harness, running
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
        kept = snoop.record_at_ack.recent_outcomes[-1]
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
        assert kept[-1].command_id == f"m{RECENT_OUTCOMES_KEPT + 4}"


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
    assert old.recent_outcomes == ()
