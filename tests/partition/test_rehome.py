"""Which journal records a repartition copies, and where (pure): every live session lands in its new
partition's stream exactly once, with its newest state, and an ended session is never brought back."""

from __future__ import annotations

from datetime import timedelta

from bridge.partition.layout import partition_of
from bridge.partition.rehome import Rehomer, Rehoming
from bridge.store.codec import SessionEnvelope, encode_marker, encode_record, parse_envelope
from bridge.store.crypto import KeyRing, generate_key
from tests.store.helpers import T0, make_record

KEYS = KeyRing.of(generate_key())
NEW = 3


def _body(session_id: str, n: int, *, closed: bool = False, seconds: float | None = None) -> bytes:
    record = make_record(session_id, n=n, closed=closed)
    return encode_record(record, KEYS, written_at=T0 + timedelta(seconds=n if seconds is None else seconds))


def _sid_in(partition: int) -> str:
    """A session id whose partition among ``NEW`` is ``partition``."""
    return next(f"s{i}" for i in range(1000) if partition_of(f"s{i}", NEW) == partition)


def _plan(*streams: tuple[int | None, list[bytes]]) -> Rehoming:
    """Feed each stream's bodies to a planner for ``NEW`` partitions, in order; its plan."""
    planner = Rehomer(NEW)
    for stream, bodies in streams:
        visit = planner.visitor(stream)
        for body in bodies:
            visit(body)
    return planner.plan()


def _copied(copies: dict[int, list[bytes]]) -> dict[int, list[tuple[str, int]]]:
    """Each copy as (session id, seconds after T0 it was written), per partition."""
    readable: dict[int, list[tuple[str, int]]] = {}
    for partition, bodies in copies.items():
        for body in bodies:
            envelope = parse_envelope(body)
            assert isinstance(envelope, SessionEnvelope)
            seconds = int((envelope.written_at - T0).total_seconds())
            readable.setdefault(partition, []).append((envelope.session_id, seconds))
    return readable


def test_the_newest_record_of_each_live_session_goes_to_its_new_partition() -> None:
    a, b = _sid_in(0), _sid_in(2)
    plan = _plan((None, [_body(a, 1), _body(b, 2), _body(a, 3), encode_marker("m", written_at=T0)]))
    assert _copied(plan.copies) == {0: [(a, 3)], 2: [(b, 2)]}
    assert (plan.live, plan.copied, plan.unreadable) == (2, 2, 0)


def test_an_ended_session_is_not_copied() -> None:
    a = _sid_in(1)
    plan = _plan((0, [_body(a, 1), _body(a, 2, closed=True)]))
    assert plan.copies == {}
    assert plan.live == 0


def test_a_session_already_in_its_partitions_stream_is_not_copied_again() -> None:
    a, b = _sid_in(1), _sid_in(2)
    plan = _plan((1, [_body(a, 1), _body(b, 1)]))
    assert _copied(plan.copies) == {2: [(b, 1)]}
    # A second run sees the copy in partition 2's stream and copies nothing.
    again = _plan((1, [_body(a, 1), _body(b, 1)]), (2, plan.copies[2]))
    assert again.copies == {}
    assert again.live == 2


def test_across_streams_the_record_written_last_wins() -> None:
    """An old copy left in a former stream never outlives the session's end in its new stream."""
    a, b = _sid_in(0), _sid_in(1)
    former = (5, [_body(a, 1), _body(b, 1)])
    current = (0, [_body(a, 9, closed=True)])  # a ended after an earlier repartition copied it
    later = (2, [_body(b, 9)])  # b moved on in another stream: its newer state is copied
    plan = _plan(current, former, later)
    assert _copied(plan.copies) == {1: [(b, 9)]}
    assert plan.live == 1


def test_within_a_stream_the_last_record_wins_and_an_unreadable_last_record_hides_the_older_ones() -> None:
    a, b = _sid_in(0), _sid_in(1)
    # b's stream order says its last record is n=1, even though the earlier one claims a later time.
    unreadable = b'{"v": 1, "kind": "session", "session_id": "' + a.encode() + b'", "closed": "nope"}'
    plan = _plan((None, [_body(a, 1), unreadable, _body(b, 5, seconds=5), _body(b, 1, seconds=1), b"junk"]))
    # a's unreadable newest goes home in its place, so a's new owner skips a as the journal would.
    assert plan.copies.pop(0) == [unreadable]
    assert _copied(plan.copies) == {1: [(b, 1)]}
    assert (plan.unreadable, plan.live) == (2, 1)


def test_an_unreadable_newest_record_in_one_stream_hides_the_session_in_every_other() -> None:
    """Copied out of its home, then its newest record in the other stream is unreadable (a later release's
    format, say): the older live copy at home must not bring it back."""
    a = _sid_in(0)
    unreadable = b'{"v": 2, "kind": "session", "session_id": "' + a.encode() + b'"}'
    plan = _plan((0, [_body(a, 1)]), (4, [_body(a, 1), unreadable]))
    assert plan.copies == {0: [unreadable]}
    assert plan.live == 0


def test_an_end_reaches_every_stream_that_stays_and_still_says_live() -> None:
    """2 -> 4 -> 3 -> 2: a stale live copy can sit in a stream other than the next home; after the end's own
    stream is gone, that copy must not be the newest record left."""
    sid = next(f"s{i}" for i in range(1000) if partition_of(f"s{i}", 4) == 2 and partition_of(f"s{i}", NEW) == 1)
    stale = (2, [_body(sid, 1)])  # stays under NEW = 3, but is not sid's home
    ended = (4, [_body(sid, 1), _body(sid, 9, closed=True)])  # goes away under NEW = 3
    plan = _plan(stale, ended)
    assert _copied(plan.copies) == {2: [(sid, 9)]}
    assert plan.live == 0


def test_an_end_written_elsewhere_is_copied_home_over_an_older_live_copy() -> None:
    """Scaled out then back: the session was copied out of its home stream, then ended in the other one. Its
    home stream still holds the live record it had before, which its owner would resume: the end goes home."""
    a = _sid_in(0)
    home = (0, [_body(a, 1)])
    elsewhere = (4, [_body(a, 1), _body(a, 8, closed=True)])
    plan = _plan(home, elsewhere)
    assert _copied(plan.copies) == {0: [(a, 8)]}
    assert plan.live == 0
    # An end with nothing live at home is not copied.
    assert _plan((4, [_body(a, 8, closed=True)])).copies == {}


def test_records_of_both_formats_are_planned_alike_and_copied_as_they_are() -> None:
    """The planner reads only the clear fields, which both formats hold; a copy is the body unchanged."""
    a, b = _sid_in(0), _sid_in(2)
    binary = encode_record(make_record(a, n=3), KEYS, written_at=T0 + timedelta(seconds=3), record_format=2)
    plan = _plan((None, [_body(a, 1), _body(b, 2), binary]), (1, [_body(b, 1)]))
    assert _copied(plan.copies) == {0: [(a, 3)], 2: [(b, 2)]}
    assert plan.copies[0] == [binary]
