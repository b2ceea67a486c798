"""Which journal records a repartition copies, and into which partition's stream. Pure.

A session's records are in the stream of the partition that owned it. After the partition count changes,
most sessions belong to another partition, whose new owner replays only its own stream; the repartition
tool (``genesys-bridge repartition``, docs/scaling.md) therefore appends each live session's newest
record to the stream of its new partition. Nothing is decrypted: the envelope's clear fields
(``session_id``, ``closed``, ``written_at``) are enough, so the tool needs no state key.

Within one stream the last record of a session is its state (stream order, as the journal folds it). A
session can have records in two streams only after an earlier repartition copied it; then the record
written last (``written_at``) wins, so an old copy never outlives the session's end in its new stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bridge.partition.layout import partition_of
from bridge.store.codec import CorruptRecord, SessionEnvelope, parse_envelope

__all__ = ["Rehoming", "StreamRecords", "plan_rehoming"]


@dataclass(frozen=True, slots=True)
class StreamRecords:
    """The bodies of one journal stream, in stream order. ``partition`` is ``None`` for the single stream
    of a release before partitions (``BRIDGE_JOURNAL_STREAM`` itself)."""

    partition: int | None
    bodies: Sequence[bytes]


@dataclass(slots=True)
class Rehoming:
    """What to append: ``copies[n]`` goes to partition ``n``'s stream, in this order."""

    copies: dict[int, list[bytes]] = field(default_factory=dict)
    #: Live sessions found (copied or already in place).
    live: int = 0
    #: Bodies that are not a readable record (left where they are; the journal skips them too).
    unreadable: int = 0

    @property
    def copied(self) -> int:
        """Records to append, over all partitions."""
        return sum(len(bodies) for bodies in self.copies.values())


@dataclass(frozen=True, slots=True)
class _Newest:
    envelope: SessionEnvelope
    body: bytes
    partition: int | None


def plan_rehoming(streams: Iterable[StreamRecords], partitions: int) -> Rehoming:
    """The copies that put every live session's newest record into its partition's stream, for
    ``partitions`` partitions. A session whose newest record already is in that stream is not copied.

    The caller appends each partition's copies in the order given (the order the sessions were written).
    """
    plan = Rehoming()
    newest: dict[str, _Newest] = {}
    for stream in streams:
        for sid, found in _fold(stream, plan).items():
            held = newest.get(sid)
            if held is None or _later(found, held, partition_of(sid, partitions)):
                newest[sid] = found
    for sid, found in sorted(newest.items(), key=lambda item: item[1].envelope.written_at):
        if found.envelope.closed:
            continue
        plan.live += 1
        home = partition_of(sid, partitions)
        if found.partition != home:
            plan.copies.setdefault(home, []).append(found.body)
    return plan


def _later(found: _Newest, held: _Newest, home: int) -> bool:
    """Whether ``found`` supersedes ``held``: written later, or as late and already home (a copy made by an
    earlier run of the tool is the same record: copying it again would only add a duplicate)."""
    if found.envelope.written_at != held.envelope.written_at:
        return found.envelope.written_at > held.envelope.written_at
    return found.partition == home


def _fold(stream: StreamRecords, plan: Rehoming) -> dict[str, _Newest]:
    """Each session's last record in ``stream``; an unreadable last record hides the older ones, as in the
    journal's own fold (an older record may predate the session's end)."""
    newest: dict[str, _Newest] = {}
    for body in stream.bodies:
        try:
            envelope = parse_envelope(body)
        except CorruptRecord as exc:
            plan.unreadable += 1
            if exc.session_id is not None:
                newest.pop(exc.session_id, None)
            continue
        if isinstance(envelope, SessionEnvelope):
            newest[envelope.session_id] = _Newest(envelope, body, stream.partition)
    return newest
