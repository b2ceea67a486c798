"""The journal's record formats: a session record sealed inside a versioned envelope. Pure, no I/O.

Two formats are read; ``BRIDGE_JOURNAL_FORMAT`` says which one is written (docs/durability.md, "Journal
format"). **Format 1** is one UTF-8 JSON object per record::

    {"v": 1, "kind": "session", "session_id": "order-42", "closed": false,
     "written_at": "2026-11-26T13:40:00Z", "sealed": "gAAAAAB..."}

``sealed`` is the whole :class:`SessionRecord` (token, deployment, attributes, checkpoints, ...) as JSON,
encrypted and authenticated by :class:`bridge.store.crypto.KeyRing` (Fernet). Only what the replay needs before
decrypting stays in clear: ``session_id`` (to fold records per session and to name an unreadable one in the
error log) and ``closed`` (to drop ended sessions without decrypting them). Both are checked against the
sealed copy when a record is opened, so a mismatch can never resume the wrong session.

**Format 2** holds the same clear fields and the same sealed JSON as bytes, with no text encoding around the
ciphertext (a quarter smaller, and cheaper to seal: docs/performance.md)::

    0x02 | flags (1 byte: bit 0 closed) | written_at (8 bytes: signed big-endian microseconds since the
    Unix epoch, UTC) | length of session_id (2 bytes, big-endian) | session_id (UTF-8) | sealed

``sealed`` is :meth:`KeyRing.seal_binary`'s: salt, nonce, AES-256-GCM ciphertext and tag. Everything before it
is authenticated with it, so an altered clear field fails to open like an altered ciphertext. A JSON body
starts with ``{`` or white space; a first byte from 0x01 to 0x08 is a binary format's version, and one this
code does not know is skipped as ``unsupported_version``.

A marker (written by a replaying reader to find the end of the stream) is always format 1 JSON::

    {"v": 1, "kind": "marker", "marker_id": "<uuid hex>", "written_at": "..."}

A batch (written by the journal's group commit, :mod:`bridge.store.group_commit`) is one stream message that
holds several of these bodies, each as a 4-byte big-endian length and the body: :func:`frame_batch` and
:func:`unframe_batch`. A reader visits its bodies in order, as if each were a message of its own.

Every way a body can be unreadable raises :class:`CorruptRecord` with a stable ``reason`` (a closed
vocabulary, used in logs) and the ``session_id`` when the envelope got far enough to name one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, TypeAdapter, ValidationError

from bridge.record import SessionRecord
from bridge.store.crypto import BINARY_OVERHEAD, KeyRing

__all__ = [
    "BINARY_VERSION",
    "VERSION",
    "CorruptRecord",
    "Envelope",
    "MarkerEnvelope",
    "RecordFormat",
    "SessionEnvelope",
    "encode_marker",
    "encode_record",
    "frame_batch",
    "media_type",
    "open_record",
    "parse_envelope",
    "unframe_batch",
]

#: The JSON envelope's version (format 1). A JSON body of any other version is skipped as ``unsupported_version``.
VERSION: Final = 1
#: The binary format's version, its first byte (format 2).
BINARY_VERSION: Final = 2
#: The formats this code writes: ``BRIDGE_JOURNAL_FORMAT``.
RecordFormat = Literal[1, 2]
#: First bytes that name a binary format's version; JSON never starts with one. (Not 0x00, which starts the
#: length of a batch's body: the last part of a truncated batch, read as a body, is then ``not_json``.)
_BINARY_FIRST_BYTES: Final = range(0x01, 0x09)
_CLOSED_FLAG: Final = 0x01
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
#: version, flags, written_at, length of session_id
_BINARY_FIXED: Final = 1 + 1 + 8 + 2
#: Where the fixed fields after the version and the flags lie.
_WRITTEN_AT: Final = slice(2, 10)
_SID_LENGTH: Final = slice(10, _BINARY_FIXED)


class CorruptRecord(Exception):
    """A journal body that cannot be used. ``reason`` is one of: ``not_json``, ``unsupported_version``,
    ``bad_envelope``, ``bad_payload``, ``session_id_mismatch``, ``closed_mismatch``."""

    def __init__(self, reason: str, *, session_id: str | None = None) -> None:
        super().__init__(reason if session_id is None else f"{reason} (session_id={session_id!r})")
        self.reason = reason
        self.session_id = session_id


class SessionEnvelope(BaseModel):
    """The clear part of a session record, and its sealed part. Extra keys are ignored so a later v1 writer
    may add some.

    ``sealed`` is the Fernet token text in format 1; in format 2 it is :meth:`KeyRing.seal_binary`'s bytes,
    and ``clear`` the clear bytes authenticated with them.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1, 2]
    kind: Literal["session"]
    session_id: str = Field(min_length=1)
    closed: bool
    written_at: datetime
    sealed: Annotated[str, Field(min_length=1)] | Annotated[bytes, Strict()]
    clear: bytes = b""


class MarkerEnvelope(BaseModel):
    """An end-of-replay marker. Carries no session data; readers skip other readers' markers."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1]
    kind: Literal["marker"]
    marker_id: str = Field(min_length=1)
    written_at: datetime


Envelope = Annotated[SessionEnvelope | MarkerEnvelope, Field(discriminator="kind")]
_ENVELOPE: TypeAdapter[SessionEnvelope | MarkerEnvelope] = TypeAdapter(Envelope)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_record(
    record: SessionRecord, keys: KeyRing, *, written_at: datetime, record_format: RecordFormat = VERSION
) -> bytes:
    """The journal body for ``record`` in ``record_format``: every field sealed under the current key, the
    secrets included. ``written_at`` must be timezone-aware."""
    if record_format == BINARY_VERSION:
        return _encode_binary(record, keys, written_at=written_at)
    # The envelope is assembled around the sealed text, which is base64url and needs no escaping: the same JSON
    # as _dumps would write, faster.
    sealed = keys.seal(record.sealed_json())
    return b"".join(
        (
            b'{"v":%d,"kind":"session","session_id":' % VERSION,
            _dumps(record.session_id),
            b',"closed":true' if record.closed else b',"closed":false',
            b',"written_at":',
            _dumps(written_at.isoformat()),
            b',"sealed":"',
            sealed.encode("ascii"),
            b'"}',
        )
    )


def _encode_binary(record: SessionRecord, keys: KeyRing, *, written_at: datetime) -> bytes:
    sid = record.session_id.encode("utf-8")
    clear = b"".join(
        (
            bytes((BINARY_VERSION, _CLOSED_FLAG if record.closed else 0)),
            ((written_at - _EPOCH) // _MICROSECOND).to_bytes(8, "big", signed=True),
            len(sid).to_bytes(2, "big"),
            sid,
        )
    )
    return clear + keys.seal_binary(record.sealed_json(), clear)


def encode_marker(marker_id: str, *, written_at: datetime) -> bytes:
    """The journal body of a replay marker."""
    return _dumps({"v": VERSION, "kind": "marker", "marker_id": marker_id, "written_at": written_at.isoformat()})


#: Bytes of the length before each body of a batch.
_LENGTH: Final = 4


def frame_batch(bodies: list[bytes]) -> bytes:
    """One message body holding ``bodies`` in order, for :func:`unframe_batch`. Each must be under 4 GiB."""
    return b"".join(len(body).to_bytes(_LENGTH, "big") + body for body in bodies)


def unframe_batch(data: bytes) -> Iterator[bytes]:
    """The bodies of a batch, in order. A truncated batch yields its whole last part as the final body, which
    then reads as corrupt (:func:`parse_envelope`), so damage costs that record and no other."""
    at = 0
    while at < len(data):
        size = int.from_bytes(data[at : at + _LENGTH], "big")
        at += _LENGTH
        yield data[at : at + size] if at + size <= len(data) else data[at - _LENGTH :]
        at += size


def parse_envelope(body: bytes) -> SessionEnvelope | MarkerEnvelope:
    """Read the clear part of a journal body, in either format. Cheap: nothing is decrypted.

    Raises:
        CorruptRecord: ``not_json``, ``unsupported_version`` or ``bad_envelope``.
    """
    if body and body[0] in _BINARY_FIRST_BYTES:
        if body[0] != BINARY_VERSION:
            raise CorruptRecord("unsupported_version")
        return _parse_binary(body)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested too deep to parse
        raise CorruptRecord("not_json") from None
    if not isinstance(data, dict):
        raise CorruptRecord("bad_envelope")
    sid = data.get("session_id") if isinstance(data.get("session_id"), str) else None
    if data.get("v") != VERSION:
        raise CorruptRecord("unsupported_version", session_id=sid)
    data.pop("clear", None)  # format 2's field: a key of that name in JSON is an extra key, ignored as any
    try:
        return _ENVELOPE.validate_python(data)
    except ValidationError:
        raise CorruptRecord("bad_envelope", session_id=sid) from None


def media_type(body: bytes) -> str:
    """The content type of a journal message holding ``body``: a format 1 record or a marker is JSON; a
    format 2 record or a batch (:func:`frame_batch`) is bytes of this codec's own layout."""
    return "application/json" if body[:1] == b"{" else "application/octet-stream"


def _parse_binary(body: bytes) -> SessionEnvelope:
    if len(body) < _BINARY_FIXED:
        raise CorruptRecord("bad_envelope")
    flags = body[1]
    at = _BINARY_FIXED + int.from_bytes(body[_SID_LENGTH], "big")
    try:
        sid = body[_BINARY_FIXED:at].decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptRecord("bad_envelope") from None
    if not sid or len(body) < at:
        raise CorruptRecord("bad_envelope")
    if flags & ~_CLOSED_FLAG or len(body) - at < BINARY_OVERHEAD:
        raise CorruptRecord("bad_envelope", session_id=sid)
    try:
        written_at = _EPOCH + int.from_bytes(body[_WRITTEN_AT], "big", signed=True) * _MICROSECOND
    except OverflowError:
        raise CorruptRecord("bad_envelope", session_id=sid) from None
    # Built without validation: every field was checked above, and this runs once per record of a replay.
    return SessionEnvelope.model_construct(
        v=BINARY_VERSION,
        kind="session",
        session_id=sid,
        closed=bool(flags & _CLOSED_FLAG),
        written_at=written_at,
        sealed=body[at:],
        clear=body[:at],
    )


def open_record(envelope: SessionEnvelope, keys: KeyRing) -> SessionRecord:
    """Decrypt and validate the sealed record, and check it belongs to this envelope.

    Raises:
        SealError: no configured key opens it (the caller decides: skip, or wrong key at startup).
        CorruptRecord: ``bad_payload``, ``session_id_mismatch`` or ``closed_mismatch``.
    """
    # SealError propagates on purpose
    sealed = envelope.sealed
    plaintext = keys.open(sealed) if isinstance(sealed, str) else keys.open_binary(sealed, envelope.clear)
    sid = envelope.session_id
    try:
        record = SessionRecord.model_validate_json(plaintext)
    except ValidationError:
        raise CorruptRecord("bad_payload", session_id=sid) from None
    # The clear fields decided how this record was folded; the sealed copy is the authority. Any
    # disagreement means the envelope was rewritten or mixed up, and resuming it could join the wrong
    # conversation, so it is refused.
    if record.session_id != sid:
        raise CorruptRecord("session_id_mismatch", session_id=sid)
    if record.closed != envelope.closed:
        raise CorruptRecord("closed_mismatch", session_id=sid)
    return record
