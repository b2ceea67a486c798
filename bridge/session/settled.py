"""The idempotency cache's storage: settled outcomes by ``command_id``, compact, as a bounded LRU.

A duplicate is answered with the original ``command.outcome`` event, field for field (same ``event_id``,
``seq``, ``occurred_at``, ids, status, reason, detail, Genesys ids and code): docs/contract.md, "Delivery
guarantees". Keeping the event itself costs about 2 KiB per entry (a pydantic model, its ``__dict__``, a
datetime and a dozen strings, in an ``OrderedDict`` node), about 180 MiB for 100,000 entries. So an
entry keeps only those fields, packed into one ``bytes`` record the event is rebuilt from when a duplicate
comes (rare: a redelivery), and the key is an ``int`` when the ``command_id`` is a canonical UUID (the
contract's recommendation). Under 200 bytes per entry, key included (``bench/idempotency_memory.py``).

The rare outcomes with field errors or an attachment part are kept as they are: they do not pack, and
they are few.

Record layout: a flags byte (which optional fields are absent, trivial or 32 hex digits), ``occurred_at``
(microseconds from the cache's first entry, zigzag varint: 6 bytes within weeks), ``seq`` (varint), the
Genesys code when the flag says so (signed 4 bytes), the outcome's shape (command type, status and reason
together: one byte indexing the cache's list of shapes, at most 255 of them), then each other string field
in a fixed order. ``event_id`` and ``genesys_message_id`` are 16 raw bytes when the flags say they are 32 hex
digits (what the bridge and Genesys send); otherwise, as every other string, a tag byte and a payload:
absent, 32 hex digits or a UUID (16 raw bytes), an index into the cache's vocabulary of repeated words
(deployments, routes, and the parts of a shape past the 255th: at most 65,536 words, kept for the cache's
life), or UTF-8 with its length, in the tag itself up to 127 bytes.
"""

from __future__ import annotations

import struct
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Final

from genesys_bridge_client.contract.events import CommandOutcome

__all__ = ["SettledCache"]

Key = int | str
_Full = tuple[CommandOutcome, str | None, str | None]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)
_CODE: Final = struct.Struct("<i")
_WORD: Final = struct.Struct("<H")

#: The second form of a UUID key (with hyphens) is offset above every 128-bit value, so ``<32 hex>`` and
#: the hyphenated spelling of the same UUID stay two keys (two different command_ids).
_HYPHENATED: Final = 1 << 128

_HAS_CODE: Final = 1
_NO_DETAIL: Final = 2  # detail is ""
_CAUSED_BY_COMMAND: Final = 4  # causation_id is the command_id (every outcome a command settles)
_NO_CORRELATION: Final = 8
_NO_ROUTE: Final = 16
_EVENT_HEX32: Final = 32  # event_id is 32 hex digits: its 16 bytes follow, untagged
_MESSAGE_HEX32: Final = 64  # the same for genesys_message_id

# String tags. Tags from _VOCAB_INLINE up to _SHORT_UTF8 are a vocabulary index in the tag byte itself;
# tags from _SHORT_UTF8 up are UTF-8 of (tag - _SHORT_UTF8) bytes.
_NONE: Final = 0
_HEX32: Final = 1
_UUID36: Final = 2
_VOCAB: Final = 4
_UTF8: Final = 5
_VOCAB_INLINE: Final = 16
_SHORT_UTF8: Final = 128
_VOCAB_MAX: Final = 1 << 16

# Shapes: (command_type, status, reason), by index in one byte; _SHAPES_MAX says "three words follow".
_SHAPES_MAX: Final = 255
Shape = tuple[str | None, str, str]


def _uuid_form(text: str) -> str:
    """``text`` (32 lowercase hex digits) as a canonical lowercase UUID with hyphens."""
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _hex32(text: str) -> bytes | None:
    """16 raw bytes if ``text`` is exactly 32 lowercase hex digits (a ``uuid4().hex``), else None."""
    if len(text) != 32:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if raw.hex() == text else None  # exact: no upper case, no spaces


def _uuid36(text: str) -> bytes | None:
    """16 raw bytes if ``text`` is a canonical lowercase UUID with hyphens, else None."""
    if len(text) != 36 or text[8] != "-" or text[13] != "-" or text[18] != "-" or text[23] != "-":
        return None
    raw = _hex32(text.replace("-", ""))
    return raw if raw is not None and _uuid_form(raw.hex()) == text else None


def cache_key(command_id: str) -> Key:
    """The dict key of ``command_id``: an int for a canonical UUID (either spelling), the string otherwise.

    One to one: an int never equals a str, and the two UUID spellings map to disjoint int ranges.
    """
    if len(command_id) == 36:
        raw = _uuid36(command_id)
        if raw is not None:
            return int.from_bytes(raw, "big") | _HYPHENATED
    elif len(command_id) == 32:
        raw = _hex32(command_id)
        if raw is not None:
            return int.from_bytes(raw, "big")
    return command_id


def _varint(value: int, out: bytearray) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _zigzag(value: int) -> int:
    return value * 2 if value >= 0 else -value * 2 - 1


def _unzigzag(value: int) -> int:
    return value // 2 if value % 2 == 0 else -(value + 1) // 2


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


class SettledCache:
    """Settled outcomes with their routing (deployment id, route), by ``command_id``, least recently used
    dropped first once more than ``size`` are kept.

    A plain dict holds the entries and a deque their order (8 bytes an entry; an ``OrderedDict`` costs
    about 50, and a dict evicted from its front with ``next(iter(d))`` rescans the holes left by earlier
    deletions, quadratic at this size). A hit re-appends its key; the stale older position is skipped at
    eviction by counting how many newer positions a key has (``_refreshed``, as small as the hits).
    """

    __slots__ = ("_base_us", "_entries", "_order", "_refreshed", "_shape_index", "_shapes", "_size", "_vocab", "_words")

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: dict[Key, bytes | _Full] = {}
        self._order: deque[Key] = deque()
        self._refreshed: dict[Key, int] = {}
        self._words: list[str] = []
        self._vocab: dict[str, int] = {}
        self._shapes: list[Shape] = []
        self._shape_index: dict[Shape, int] = {}
        self._base_us: int | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, command_id: str) -> bool:
        return cache_key(command_id) in self._entries

    def touch(self, command_id: str) -> bool:
        """Mark ``command_id`` most recently used; False when it is not kept."""
        key = cache_key(command_id)
        if key not in self._entries:
            return False
        self._refresh(key)
        return True

    def put(self, command_id: str, outcome: CommandOutcome, deployment_id: str | None, route: str | None) -> None:
        """Keep ``outcome`` of ``command_id``, dropping the least recently used beyond the size."""
        if self._size <= 0:
            return
        key = cache_key(command_id)
        if key in self._entries:
            self._refresh(key)
        else:
            self._order.append(key)
        # The record leaves command_id out (the key is it), so an outcome naming another id is kept whole, and
        # so is one the format cannot hold (a code past 32 bits, a lone surrogate in a Genesys detail): the
        # cache must never be why an outcome is not published.
        try:
            packed = self._pack(outcome, deployment_id, route) if outcome.command_id == command_id else None
        except (struct.error, UnicodeEncodeError):
            packed = None
        self._entries[key] = packed if packed is not None else (outcome, deployment_id, route)
        while len(self._entries) > self._size:
            old = self._order.popleft()
            newer = self._refreshed.get(old)
            if newer is None:
                del self._entries[old]
            elif newer > 1:
                self._refreshed[old] = newer - 1
            else:
                del self._refreshed[old]

    def get(self, command_id: str) -> _Full | None:
        """The outcome kept for ``command_id`` (rebuilt, equal to the one kept) with its routing, or None."""
        entry = self._entries.get(cache_key(command_id))
        if entry is None:
            return None
        if isinstance(entry, tuple):
            return entry
        return self._unpack(entry, command_id)

    def _refresh(self, key: Key) -> None:
        self._order.append(key)
        self._refreshed[key] = self._refreshed.get(key, 0) + 1
        if len(self._order) > 2 * len(self._entries) + 1024:
            # Repeated duplicates of few commands would grow the order without bound: keep each key once,
            # at its most recent place.
            seen: set[Key] = set()
            newest_first: list[Key] = []
            for k in reversed(self._order):
                if k not in seen:
                    seen.add(k)
                    newest_first.append(k)
            newest_first.reverse()
            self._order = deque(newest_first)
            self._refreshed.clear()

    # --- packing ------------------------------------------------------------------------------------

    def _pack(self, outcome: CommandOutcome, deployment_id: str | None, route: str | None) -> bytes | None:
        occurred_at = outcome.occurred_at
        command_id = outcome.command_id
        if outcome.errors or outcome.attachment is not None or occurred_at.tzinfo is not UTC or command_id is None:
            return None  # rare, and not worth a format of their own: kept whole
        micros = (occurred_at - _EPOCH) // _ONE_US
        if self._base_us is None:
            self._base_us = micros
        event_raw = _hex32(outcome.event_id)
        message_raw = _hex32(outcome.genesys_message_id) if outcome.genesys_message_id is not None else None
        flags = (
            (_HAS_CODE if outcome.genesys_code is not None else 0)
            | (_NO_DETAIL if not outcome.detail else 0)
            | (_CAUSED_BY_COMMAND if outcome.causation_id == command_id else 0)
            | (_NO_CORRELATION if outcome.correlation_id is None else 0)
            | (_NO_ROUTE if route is None else 0)
            | (_EVENT_HEX32 if event_raw is not None else 0)
            | (_MESSAGE_HEX32 if message_raw is not None else 0)
        )
        out = bytearray((flags,))
        _varint(_zigzag(micros - self._base_us), out)
        _varint(outcome.seq, out)
        if outcome.genesys_code is not None:
            out += _CODE.pack(outcome.genesys_code)
        self._shape((outcome.command_type, outcome.status, outcome.reason), out)
        self._id(outcome.event_id, event_raw, out)
        self._text(outcome.session_id, out)
        if outcome.correlation_id is not None:
            self._text(outcome.correlation_id, out)
        if outcome.causation_id != command_id:
            self._text(outcome.causation_id, out)
        if outcome.detail:
            self._text(outcome.detail, out)
        self._id(outcome.genesys_message_id, message_raw, out)
        self._word(deployment_id, out)
        if route is not None:
            self._word(route, out)
        return bytes(out)

    def _id(self, text: str | None, raw: bytes | None, out: bytearray) -> None:
        """An id as its 16 bytes when it is 32 hex digits (``raw``, flagged by the caller), else tagged."""
        if raw is not None:
            out += raw
        else:
            self._text(text, out)

    def _text(self, text: str | None, out: bytearray) -> None:
        if text is None:
            out.append(_NONE)
            return
        raw = _hex32(text)
        if raw is not None:
            out.append(_HEX32)
            out += raw
            return
        raw = _uuid36(text)
        if raw is not None:
            out.append(_UUID36)
            out += raw
            return
        data = text.encode("utf-8")
        if len(data) < 256 - _SHORT_UTF8:
            out.append(_SHORT_UTF8 + len(data))
        else:
            out.append(_UTF8)
            _varint(len(data), out)
        out += data

    def _shape(self, shape: Shape, out: bytearray) -> None:
        """An outcome's command type, status and reason: one byte for the first 255 shapes, then three words."""
        index = self._shape_index.get(shape)
        if index is None and len(self._shapes) < _SHAPES_MAX:
            index = self._shape_index[shape] = len(self._shapes)
            self._shapes.append(shape)
        if index is not None:
            out.append(index)
            return
        out.append(_SHAPES_MAX)
        for word in shape:
            self._word(word, out)

    def _word(self, text: str | None, out: bytearray) -> None:
        """A string that repeats across entries (types, statuses, reasons, deployments, routes): by index."""
        if text is None:
            out.append(_NONE)
            return
        index = self._vocab.get(text)
        if index is None:
            if len(self._words) >= _VOCAB_MAX:  # bounded: beyond it, inline (e.g. free-text details)
                self._text(text, out)
                return
            index = self._vocab[text] = len(self._words)
            self._words.append(text)
        if index < _SHORT_UTF8 - _VOCAB_INLINE:
            out.append(_VOCAB_INLINE + index)
        else:
            out.append(_VOCAB)
            out += _WORD.pack(index)

    def _unpack(self, data: bytes, command_id: str) -> _Full:
        flags = data[0]
        offset, pos = _read_varint(data, 1)
        micros = _unzigzag(offset) + (self._base_us or 0)
        seq, pos = _read_varint(data, pos)
        code: int | None = None
        if flags & _HAS_CODE:
            (code,) = _CODE.unpack_from(data, pos)
            pos += _CODE.size
        shape_index = data[pos]
        pos += 1
        command_type: str | None
        status: str | None
        reason: str | None
        if shape_index < _SHAPES_MAX:
            command_type, status, reason = self._shapes[shape_index]
        else:
            command_type, pos = self._read_text(data, pos)
            status, pos = self._read_text(data, pos)
            reason, pos = self._read_text(data, pos)
        event_id, pos = self._read_id(data, pos, untagged=bool(flags & _EVENT_HEX32))
        session_id, pos = self._read_text(data, pos)
        correlation_id: str | None = None
        if not flags & _NO_CORRELATION:
            correlation_id, pos = self._read_text(data, pos)
        causation_id: str | None = command_id
        if not flags & _CAUSED_BY_COMMAND:
            causation_id, pos = self._read_text(data, pos)
        detail: str | None = ""
        if not flags & _NO_DETAIL:
            detail, pos = self._read_text(data, pos)
        gid, pos = self._read_id(data, pos, untagged=bool(flags & _MESSAGE_HEX32))
        dep, pos = self._read_text(data, pos)
        route: str | None = None
        if not flags & _NO_ROUTE:
            route, pos = self._read_text(data, pos)
        outcome = CommandOutcome.model_validate(
            {
                "event_id": event_id,
                "session_id": session_id,
                "seq": seq,
                "occurred_at": _EPOCH + timedelta(microseconds=micros),
                "causation_id": causation_id,
                "correlation_id": correlation_id,
                "command_id": command_id,
                "command_type": command_type,
                "status": status,
                "reason": reason,
                "detail": detail,
                "genesys_message_id": gid,
                "genesys_code": code,
            }
        )
        return outcome, dep, route

    def _read_id(self, data: bytes, pos: int, *, untagged: bool) -> tuple[str | None, int]:
        """An id the flags say is 32 hex digits (16 bytes, no tag), or else a tagged string."""
        if untagged:
            return data[pos : pos + 16].hex(), pos + 16
        return self._read_text(data, pos)

    def _read_text(self, data: bytes, pos: int) -> tuple[str | None, int]:
        tag = data[pos]
        pos += 1
        if tag >= _SHORT_UTF8:
            end = pos + tag - _SHORT_UTF8
            return data[pos:end].decode("utf-8"), end
        if tag >= _VOCAB_INLINE:
            return self._words[tag - _VOCAB_INLINE], pos
        if tag == _NONE:
            return None, pos
        if tag == _HEX32:
            return data[pos : pos + 16].hex(), pos + 16
        if tag == _UUID36:
            return _uuid_form(data[pos : pos + 16].hex()), pos + 16
        if tag == _VOCAB:
            (index,) = _WORD.unpack_from(data, pos)
            return self._words[index], pos + _WORD.size
        length, pos = _read_varint(data, pos)
        return data[pos : pos + length].decode("utf-8"), pos + length
