"""JournalStore rules on an in-memory log: fold, keys, corrupt records, coalescing, re-journal."""

from __future__ import annotations

import asyncio
import json

import pytest
from structlog.testing import capture_logs

from bridge.errors import BrokerUnavailable, StateKeyError
from bridge.record import SessionRecord
from bridge.store.codec import RecordFormat, encode_marker
from bridge.store.crypto import KeyRing, generate_key
from bridge.store.journal import JournalStore
from bridge.store.memory import MemoryJournalLog
from tests.cancel_aside import turn_the_cancel_aside
from tests.store.helpers import T0, FixedClock, corrupt_count, make_record, new_metrics

KEY = generate_key()


def store(log: MemoryJournalLog, *keys: str, record_format: RecordFormat = 1) -> JournalStore:
    ring = KeyRing.of(*(keys or (KEY,)))
    return JournalStore(log, ring, metrics=new_metrics(), clock=FixedClock(), record_format=record_format)


def tokens(records: list[SessionRecord]) -> dict[str, str]:
    return {r.session_id: r.token.get_secret_value() for r in records}


async def test_a_new_store_reads_back_what_another_saved() -> None:
    log = MemoryJournalLog()
    writer = store(log)
    for i in range(5):
        await writer.save(make_record(f"s-{i}"))
    live = await store(log).load_live()
    assert tokens(live) == {f"s-{i}": f"tok-s-{i}" for i in range(5)}


async def test_newest_record_wins_and_order_follows_newest_writes() -> None:
    log = MemoryJournalLog()
    writer = store(log)
    await writer.save(make_record("a", n=1))
    await writer.save(make_record("b", n=1))
    await writer.save(make_record("a", n=2))
    live = await store(log).load_live()
    assert [(r.session_id, r.seq) for r in live] == [("b", 1), ("a", 2)]


async def test_closed_sessions_are_not_returned() -> None:
    log = MemoryJournalLog()
    writer = store(log)
    await writer.save(make_record("a", n=1))
    await writer.save(make_record("b", n=1))
    await writer.save(make_record("a", n=2, closed=True, state="ended"))
    assert [r.session_id for r in await store(log).load_live()] == ["b"]


async def test_sessions_that_belong_elsewhere_are_neither_loaded_nor_written_again() -> None:
    """After a repartition a stream still holds records of sessions that moved to another partition."""
    log = MemoryJournalLog()
    writer = store(log)
    for sid in ("stays", "moved"):
        await writer.save(make_record(sid))
    reader = JournalStore(
        log, KeyRing.of(KEY), metrics=new_metrics(), clock=FixedClock(), belongs=lambda sid: sid == "stays"
    )
    with capture_logs() as logs:
        assert [r.session_id for r in await reader.load_live()] == ["stays"]
    assert [e["elsewhere"] for e in logs if e["event"] == "journal_replayed"] == [1]
    assert await reader.rejournal() == 1
    assert [r.session_id for r in reader.live_sessions()] == ["stays"]


async def test_a_session_restarted_after_close_is_live_again() -> None:
    log = MemoryJournalLog()
    writer = store(log)
    await writer.save(make_record("a", n=1, closed=True))
    await writer.save(make_record("a", token="tok-new", n=2))
    assert tokens(await store(log).load_live()) == {"a": "tok-new"}


async def test_empty_journal_and_markers_only() -> None:
    log = MemoryJournalLog()
    assert await store(log).load_live() == []
    log.bodies.append(encode_marker("m1", written_at=T0))
    assert await store(log).load_live() == []


async def test_corrupt_record_is_skipped_counted_and_logged() -> None:
    log = MemoryJournalLog()
    writer = store(log)
    await writer.save(make_record("a"))
    log.bodies.append(b"\x00garbage")
    log.bodies.append(b'{"v": 99, "kind": "session", "session_id": "future"}')
    await writer.save(make_record("b"))
    reader = store(log)
    with capture_logs() as logs:
        live = await reader.load_live()
    assert sorted(tokens(live)) == ["a", "b"]
    assert corrupt_count(reader._metrics) == 2
    skipped = [e for e in logs if e["event"] == "journal_record_skipped"]
    assert [(e["reason"], e["session_id"], e["log_level"]) for e in skipped] == [
        ("not_json", None, "error"),
        ("unsupported_version", "future", "error"),
    ]


async def test_unreadable_newest_record_hides_older_ones() -> None:
    # The unreadable record might be the session's close: resuming the older live record could revive it.
    log = MemoryJournalLog()
    writer = store(log)
    await writer.save(make_record("a", n=1))
    await writer.save(make_record("b", n=1))
    log.bodies.append(b'{"v": 1, "kind": "session", "session_id": "a"}')  # bad envelope, names "a"
    reader = store(log)
    assert [r.session_id for r in await reader.load_live()] == ["b"]
    assert corrupt_count(reader._metrics) == 1


async def test_session_id_swapped_between_envelopes_is_refused() -> None:
    log = MemoryJournalLog()
    writer = store(log)
    await writer.save(make_record("victim"))
    await writer.save(make_record("other"))
    forged = json.loads(log.bodies[0])
    forged["session_id"] = "other"  # victim's sealed record under other's name, as other's newest
    log.bodies.append(json.dumps(forged).encode())
    reader = store(log)
    with capture_logs() as logs:
        live = await reader.load_live()
    assert tokens(live) == {"victim": "tok-victim"}  # "other" is skipped, never resumed with victim's token
    assert [(e["reason"], e["session_id"]) for e in logs if e["event"] == "journal_record_skipped"] == [
        ("session_id_mismatch", "other")
    ]


async def test_wrong_key_for_every_live_record_is_a_startup_error() -> None:
    log = MemoryJournalLog()
    await store(log, KEY).save(make_record("a"))
    await store(log, KEY).save(make_record("b"))
    wrong = KeyRing.of(generate_key())
    reader = JournalStore(log, wrong, metrics=new_metrics(), clock=FixedClock())
    with pytest.raises(StateKeyError, match="none of the 2 live session records") as info:
        await reader.load_live()
    assert wrong.current_fingerprint in str(info.value)
    assert KEY not in str(info.value)
    assert corrupt_count(reader._metrics) == 0


async def test_one_record_under_an_unknown_key_among_good_ones_is_skipped() -> None:
    log = MemoryJournalLog()
    await store(log, generate_key()).save(make_record("stray"))
    await store(log, KEY).save(make_record("good"))
    reader = store(log, KEY)
    with capture_logs() as logs:
        live = await reader.load_live()
    assert [r.session_id for r in live] == ["good"]
    assert corrupt_count(reader._metrics) == 1
    assert [(e["reason"], e["session_id"]) for e in logs if e["event"] == "journal_record_skipped"] == [
        ("undecryptable", "stray")
    ]


async def test_closed_records_under_an_unknown_key_are_not_a_key_error() -> None:
    # Nothing live is lost, so a new key over a journal of ended sessions starts cleanly.
    log = MemoryJournalLog()
    await store(log, generate_key()).save(make_record("a", closed=True))
    assert await store(log, KEY).load_live() == []


async def test_rotation_reads_old_records_then_rejournal_moves_them_to_the_new_key() -> None:
    old, new = KEY, generate_key()
    log = MemoryJournalLog()
    await store(log, old).save(make_record("a"))
    rotated = store(log, new, old)
    assert tokens(await rotated.load_live()) == {"a": "tok-a"}
    assert await rotated.rejournal() == 1
    # The old key can now be retired: the newest record of every live session is under the new key.
    assert tokens(await store(log, new).load_live()) == {"a": "tok-a"}


async def test_saves_of_one_session_coalesce_and_the_newest_wins() -> None:
    log = MemoryJournalLog()
    log.gate = asyncio.Event()
    writer = store(log)

    async def open_gate() -> None:
        log.gate.set()  # type: ignore[union-attr]

    # Task order is FIFO: save n=1 reaches the log and waits on the gate; n=2..4 queue behind it; then
    # the gate opens. Only n=1 and the newest (n=4) are written.
    await asyncio.gather(*(writer.save(make_record("a", n=n)) for n in range(1, 5)), open_gate())
    assert log.appends == 2
    assert [r.seq for r in await store(log).load_live()] == [4]


async def test_a_failed_write_raises_and_the_next_save_writes_the_newest() -> None:
    log = MemoryJournalLog()
    writer = store(log)
    log.fail_appends = 1
    with pytest.raises(BrokerUnavailable):
        await writer.save(make_record("a", n=1))
    await writer.save(make_record("a", n=2))
    assert [r.seq for r in await store(log).load_live()] == [2]


async def test_a_waiter_writes_when_the_holders_write_failed() -> None:
    log = MemoryJournalLog()
    log.gate = asyncio.Event()
    log.fail_appends = 1
    writer = store(log)

    async def open_gate() -> None:
        log.gate.set()  # type: ignore[union-attr]

    results = await asyncio.gather(
        writer.save(make_record("a", n=1)), writer.save(make_record("a", n=2)), open_gate(), return_exceptions=True
    )
    assert isinstance(results[0], BrokerUnavailable)
    assert results[1] is None
    assert [r.seq for r in await store(log).load_live()] == [2]


async def test_rejournal_rewrites_every_live_session_but_never_a_closed_one() -> None:
    log = MemoryJournalLog()
    writer = store(log)
    await writer.save(make_record("a", n=1))
    await writer.save(make_record("b", n=1))
    await writer.save(make_record("b", n=2, closed=True))
    await writer.save(make_record("c", n=5))
    before = log.appends
    assert await writer.rejournal() == 2
    assert log.appends == before + 2
    # Retention may now drop everything older than the re-journal: the newest records alone suffice.
    log.bodies[:] = log.bodies[before:]
    assert sorted((r.session_id, r.seq) for r in await store(log).load_live()) == [("a", 1), ("c", 5)]


async def test_rejournal_after_restart_covers_loaded_sessions() -> None:
    log = MemoryJournalLog()
    await store(log).save(make_record("a"))
    restarted = store(log)
    await restarted.load_live()
    assert await restarted.rejournal() == 1
    assert [r.session_id for r in restarted.live_sessions()] == ["a"]


async def test_rejournal_racing_a_close_never_revives_the_session() -> None:
    log = MemoryJournalLog()
    writer = store(log)
    await writer.save(make_record("a", n=1))
    log.gate = asyncio.Event()

    async def open_gate() -> None:
        log.gate.set()  # type: ignore[union-attr]

    # The close is submitted first and is in flight when the re-journal runs: the re-journal must skip it.
    await asyncio.gather(writer.save(make_record("a", n=2, closed=True)), writer.rejournal(), open_gate())
    assert await store(log).load_live() == []
    assert list(writer.live_sessions()) == []


async def test_rejournal_failure_is_raised_after_trying_every_session() -> None:
    log = MemoryJournalLog()
    writer = store(log)
    for sid in "abc":
        await writer.save(make_record(sid))
    before = log.appends
    log.fail_appends = 1
    with pytest.raises(BrokerUnavailable):
        await writer.rejournal()
    assert log.appends == before + 2


async def test_flush_waits_for_writes_in_flight() -> None:
    log = MemoryJournalLog()
    log.gate = asyncio.Event()
    writer = store(log)
    await writer.flush()  # idle: returns at once
    async with asyncio.TaskGroup() as tg:
        saving = tg.create_task(writer.save(make_record("a")))
        flushing = tg.create_task(writer.flush())
        await log.append_entered.wait()
        assert not flushing.done()
        log.gate.set()
    assert saving.done()
    assert log.appends == 1


async def test_rejournal_skips_sessions_written_recently() -> None:
    log = MemoryJournalLog()
    clock = FixedClock()
    writer = JournalStore(log, KeyRing.of(KEY), metrics=new_metrics(), clock=clock)
    await writer.save(make_record("idle"))
    clock.advance(3000)
    await writer.save(make_record("busy"))
    clock.advance(700)
    assert await writer.rejournal(older_than_s=3600) == 1  # "idle" only: 3700 s since its last write
    clock.advance(100)
    assert await writer.rejournal(older_than_s=3600) == 0  # "idle" was just written, "busy" 800 s ago
    assert await writer.rejournal() == 2  # no horizon: every live session


async def test_loaded_sessions_are_rejournalled_on_the_first_pass() -> None:
    # Their records are as old as the outage was long, and may be under an old key.
    log = MemoryJournalLog()
    await store(log).save(make_record("a"))
    restarted = store(log)
    await restarted.load_live()
    assert await restarted.rejournal(older_than_s=3600) == 1


async def test_a_failed_close_is_retried_by_rejournal_then_forgotten() -> None:
    # Regression: the close's write failed, nothing else saves an ended session, and re-journal skipped
    # closed records, so the log's newest record stayed live and a restart resumed the ended session.
    log = MemoryJournalLog()
    clock = FixedClock()
    writer = JournalStore(log, KeyRing.of(KEY), metrics=new_metrics(), clock=clock)
    await writer.save(make_record("a", n=1))
    await writer.save(make_record("b", n=1))
    log.fail_appends = 1
    with pytest.raises(BrokerUnavailable):
        await writer.save(make_record("a", n=2, closed=True, state="ended"))
    assert [r.session_id for r in await store(log).load_live()] == ["a", "b"]  # the restart hazard
    # Retried whatever its age: the horizon only spares live sessions written recently.
    assert await writer.rejournal(older_than_s=3600) == 1
    assert [r.session_id for r in await store(log).load_live()] == ["b"]
    # Confirmed, so forgotten: the next passes write only the live session.
    clock.advance(3601)
    assert await writer.rejournal(older_than_s=3600) == 1
    assert [r.session_id for r in writer.live_sessions()] == ["b"]
    assert "a" not in writer._latest  # bounded memory: nothing kept for an ended session


async def test_a_close_failing_again_stays_pending_until_a_pass_confirms_it() -> None:
    log = MemoryJournalLog()
    writer = store(log)
    await writer.save(make_record("a", n=1))
    log.fail_appends = 2
    with pytest.raises(BrokerUnavailable):
        await writer.save(make_record("a", n=2, closed=True))
    with pytest.raises(BrokerUnavailable):
        await writer.rejournal()
    assert [r.session_id for r in await store(log).load_live()] == ["a"]
    assert await writer.rejournal() == 1
    assert await store(log).load_live() == []
    assert await writer.rejournal() == 0


async def test_each_confirmed_write_is_timed_and_a_failed_one_is_not() -> None:
    log = MemoryJournalLog()
    metrics = new_metrics()
    writer = JournalStore(log, KeyRing.of(KEY), metrics=metrics, clock=FixedClock())
    await writer.save(make_record("a", n=1))
    log.fail_appends = 1
    with pytest.raises(BrokerUnavailable):
        await writer.save(make_record("a", n=2))
    assert metrics.registry.get_sample_value("genesys_bridge_journal_write_seconds_count") == 1


@pytest.mark.parametrize(("first", "then"), [(1, 2), (2, 1)])
async def test_records_of_both_formats_fold_together_and_the_newest_wins(
    first: RecordFormat, then: RecordFormat
) -> None:
    """Replicas writing either format share a journal: an upgrade to format 2, and a return to format 1."""
    log = MemoryJournalLog()
    await store(log, record_format=first).save(make_record("a", n=1))
    await store(log, record_format=first).save(make_record("b", n=1))
    await store(log, record_format=then).save(make_record("a", n=2))
    await store(log, record_format=then).save(make_record("b", closed=True))
    assert [body[:1] == b"{" for body in log.bodies] == [first == 1, first == 1, then == 1, True]  # a close: 1
    live = await store(log).load_live()
    assert [(r.session_id, r.seq) for r in live] == [("a", make_record("a", n=2).seq)]


async def test_rejournal_writes_every_live_session_in_the_configured_format() -> None:
    """After a switch of format, one re-journal pass leaves every live session's newest record in it, so a
    return to a release that reads only format 1 is safe after a pass under format 1."""
    log = MemoryJournalLog()
    await store(log, record_format=2).save(make_record("a"))
    back = store(log, record_format=1)
    assert tokens(await back.load_live()) == {"a": "tok-a"}
    assert await back.rejournal() == 1
    assert log.bodies[-1][:1] == b"{"
    assert tokens(await store(log).load_live()) == {"a": "tok-a"}


async def test_a_release_that_reads_only_format_1_never_resumes_a_session_that_ended_under_format_2() -> None:
    """Such a release skips every binary record without knowing its session (as if it were not there), so a
    session's close is written in format 1: an older live record of it must not stand for its newest."""
    log = MemoryJournalLog()
    await store(log, record_format=1).save(make_record("a", n=1))
    writer = store(log, record_format=2)
    await writer.save(make_record("a", n=2))
    await writer.save(make_record("a", n=3, closed=True))
    assert [body[:1] for body in log.bodies] == [b"{", b"\x02", b"{"]
    as_an_older_release_reads_it = MemoryJournalLog()
    as_an_older_release_reads_it.bodies = [body for body in log.bodies if body[:1] == b"{"]
    assert await store(as_an_older_release_reads_it).load_live() == []


class _LogTakingTheCancelAsWritten(MemoryJournalLog):
    """A log whose append, cancelled while it waits for the broker, returns as if it had written (nothing is
    written); appends after that cancel write at once."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = False
        self.cancelled = False

    async def append(self, body: bytes) -> None:
        if self.holding and not self.cancelled:
            await turn_the_cancel_aside(self.append_entered)
            self.cancelled = True
            return
        await super().append(body)


async def test_a_cancelled_rejournal_pass_writes_nothing_more_when_a_write_took_the_cancel_as_written() -> None:
    log = _LogTakingTheCancelAsWritten()
    writer = store(log)
    for i in range(100):
        await writer.save(make_record(f"s-{i}"))
    before, log.holding = log.appends, True
    log.append_entered.clear()  # set by the saves above
    rejournal = asyncio.create_task(writer.rejournal())
    await log.append_entered.wait()
    rejournal.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rejournal
    assert log.cancelled
    assert log.appends == before  # the pass stopped: no session of it was written after the cancel
