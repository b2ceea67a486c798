"""The journal's record format: a versioned JSON envelope around a sealed session record. Pure, no I/O.

A session record on the wire (one stream message body, UTF-8 JSON)::

    {"v": 1, "kind": "session", "session_id": "order-42", "closed": false,
     "written_at": "2026-11-26T13:40:00Z", "sealed": "gAAAAAB..."}

``sealed`` is the whole :class:`SessionRecord` (token, deployment, attributes, checkpoints, ...) as JSON,
encrypted and authenticated by :class:`bridge.store.crypto.KeyRing`. Only what the replay needs before
decrypting stays in clear: ``session_id`` (to fold records per session and to name an unreadable one in the
error log) and ``closed`` (to drop ended sessions without decrypting them). Both are checked against the
sealed copy when a record is opened, so a mismatch can never resume the wrong session.

A marker (written by a replaying reader to find the end of the stream) is::

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
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from bridge.record import SessionRecord
from bridge.store.crypto import KeyRing

__all__ = [
    "VERSION",
    "CorruptRecord",
    "Envelope",
    "MarkerEnvelope",
    "SessionEnvelope",
    "encode_marker",
    "encode_record",
    "frame_batch",
    "open_record",
    "parse_envelope",
    "unframe_batch",
]

#: The envelope version this code writes and reads. Anything else is skipped as ``unsupported_version``.
VERSION: Final = 1


class CorruptRecord(Exception):
    """A journal body that cannot be used. ``reason`` is one of: ``not_json``, ``unsupported_version``,
    ``bad_envelope``, ``bad_payload``, ``session_id_mismatch``, ``closed_mismatch``."""

    def __init__(self, reason: str, *, session_id: str | None = None) -> None:
        super().__init__(reason if session_id is None else f"{reason} (session_id={session_id!r})")
        self.reason = reason
        self.session_id = session_id


class SessionEnvelope(BaseModel):
    """The clear part of a session record. Extra keys are ignored so a later v1 writer may add some."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1]
    kind: Literal["session"]
    session_id: str = Field(min_length=1)
    closed: bool
    written_at: datetime
    sealed: str = Field(min_length=1)


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


def encode_record(record: SessionRecord, keys: KeyRing, *, written_at: datetime) -> bytes:
    """The journal body for ``record``: every field sealed under the current key, the secrets included."""
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
    """Read the clear part of a journal body. Cheap: nothing is decrypted.

    Raises:
        CorruptRecord: ``not_json``, ``unsupported_version`` or ``bad_envelope``.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise CorruptRecord("not_json") from None
    if not isinstance(data, dict):
        raise CorruptRecord("bad_envelope")
    sid = data.get("session_id") if isinstance(data.get("session_id"), str) else None
    if data.get("v") != VERSION:
        raise CorruptRecord("unsupported_version", session_id=sid)
    try:
        return _ENVELOPE.validate_python(data)
    except ValidationError:
        raise CorruptRecord("bad_envelope", session_id=sid) from None


def open_record(envelope: SessionEnvelope, keys: KeyRing) -> SessionRecord:
    """Decrypt and validate the sealed record, and check it belongs to this envelope.

    Raises:
        SealError: no configured key opens it (the caller decides: skip, or wrong key at startup).
        CorruptRecord: ``bad_payload``, ``session_id_mismatch`` or ``closed_mismatch``.
    """
    plaintext = keys.open(envelope.sealed)  # SealError propagates on purpose
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
