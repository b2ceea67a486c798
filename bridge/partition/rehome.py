"""Which journal records a repartition copies, and into which partition's stream. Pure.

A session's records are in the stream of the partition that owned it. After the partition count changes,
most sessions belong to another partition, whose new owner replays only its own stream; the repartition
tool (``genesys-bridge repartition``, docs/scaling.md) therefore appends each live session's newest
record to the stream of its new partition. Nothing is decrypted: the envelope's clear fields
(``session_id``, ``closed``, ``written_at``) are enough, so the tool needs no state key.

Within one stream the last record of a session is its state (stream order, as the journal folds it). A
session can have records in two streams only after an earlier repartition copied it; then the record
written last (``written_at``) wins. When that newest record says the session ended, the end is copied into
every stream that stays and still holds an older live record of it (an earlier repartition's copy): an
old copy never outlives the session's end, however many repartitions follow.

The planner keeps only each stream's newest record per session while the streams are read, so its memory
is bounded by the sessions, not by how many records the streams hold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.partition.layout import partition_of
from bridge.store.codec import CorruptRecord, SessionEnvelope, parse_envelope

__all__ = ["Rehomer", "Rehoming"]

#: A stream: the partition it belongs to, or ``None`` for the single stream of a release before partitions.
StreamKey = int | None


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
    stream: StreamKey


@dataclass(frozen=True, slots=True)
class _Unreadable:
    """A stream's newest record of a session cannot be read: the journal then resumes the session from
    nowhere (an older record may predate its end), and neither may a repartition."""

    body: bytes


class Rehomer:
    """Plans a repartition's journal copies for ``partitions`` partitions.

    The caller feeds each stream's bodies in stream order through :meth:`visitor` (one visitor per stream,
    each stream once), then calls :meth:`plan` and appends each partition's copies in the order given.
    """

    def __init__(self, partitions: int) -> None:
        self._partitions = partitions
        self._streams: dict[StreamKey, dict[str, _Newest | _Unreadable]] = {}
        self._unreadable = 0

    def visitor(self, stream: StreamKey) -> Callable[[bytes], None]:
        """A ``visit(body)`` for the stream ``stream`` (its partition, or ``None`` for the old single one)."""
        newest = self._streams.setdefault(stream, {})

        def visit(body: bytes) -> None:
            try:
                envelope = parse_envelope(body)
            except CorruptRecord as exc:
                self._unreadable += 1
                if exc.session_id is not None:
                    newest[exc.session_id] = _Unreadable(body)
                return
            if isinstance(envelope, SessionEnvelope):
                newest[envelope.session_id] = _Newest(envelope, body, stream)

        return visit

    def plan(self) -> Rehoming:
        """The copies that put every session's newest state into the streams that stay (those of partitions
        below the new count): a live session's newest record into its home stream where it is not there yet;
        a session's end into every stream that stays and still says it is live; and a session whose newest
        record somewhere cannot be read, that record in the same places, so that no owner resumes it."""
        plan = Rehoming(unreadable=self._unreadable)
        winners: dict[str, _Newest] = {}
        hidden: dict[str, bytes] = {}
        for newest in self._streams.values():
            for sid, found in newest.items():
                if isinstance(found, _Unreadable):
                    hidden[sid] = found.body
                    continue
                held = winners.get(sid)
                if held is None or _later(found, held, partition_of(sid, self._partitions)):
                    winners[sid] = found
        for sid, body in hidden.items():
            winners.pop(sid, None)
            for stream in self._still_live(sid, also=partition_of(sid, self._partitions)):
                plan.copies.setdefault(stream, []).append(body)
        for sid, found in sorted(winners.items(), key=lambda item: item[1].envelope.written_at):
            home = partition_of(sid, self._partitions)
            if not found.envelope.closed:
                plan.live += 1
                if found.stream != home:
                    plan.copies.setdefault(home, []).append(found.body)
                continue
            for stream in self._still_live(sid):
                if stream != found.stream:
                    plan.copies.setdefault(stream, []).append(found.body)
        return plan

    def _still_live(self, sid: str, *, also: int | None = None) -> list[int]:
        """The streams that stay whose newest record of ``sid`` says it is live (and ``also``, if given)."""
        streams = {
            stream
            for stream, newest in self._streams.items()
            if isinstance(stream, int)
            and stream < self._partitions
            and isinstance(found := newest.get(sid), _Newest)
            and not found.envelope.closed
        }
        if also is not None:
            streams.add(also)
        return sorted(streams)


def _later(found: _Newest, held: _Newest, home: int) -> bool:
    """Whether ``found`` supersedes ``held``: written later, or as late and already home (a copy made by an
    earlier run of the tool is the same record: copying it again would only add a duplicate)."""
    if found.envelope.written_at != held.envelope.written_at:
        return found.envelope.written_at > held.envelope.written_at
    return found.stream == home
