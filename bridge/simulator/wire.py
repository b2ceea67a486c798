"""Server → client frame builders (§3.2, §5, §6): pure functions returning JSON-ready dicts.

Every builder returns the envelope ``{"type", "class", "code", "body", "tracingId"?}``; the connection
serialises it once. Nothing here does I/O or reads simulator state.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "Frame",
    "connection_closed",
    "dumps",
    "envelope",
    "error",
    "iso_now",
    "logout_event",
    "new_message_id",
    "too_many_requests",
]

Frame = dict[str, Any]

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_ESCAPING_ENCODER = json.JSONEncoder(separators=(",", ":"))


def dumps(frame: Frame) -> str:
    """Serialise one frame compactly (one JSON object per text frame, §3).

    Text cut inside a surrogate pair (an unpaired surrogate, §3.2) cannot travel as UTF-8: such a frame is
    written with every non-ASCII character as a ``\\uXXXX`` escape, as JSON allows.
    """
    text = _ENCODER.encode(frame)
    if not text.isascii():
        try:
            text.encode()  # as the socket will; a search for a range of characters is several times slower
        except UnicodeEncodeError:
            return _ESCAPING_ENCODER.encode(frame)
    return text


def new_message_id() -> str:
    """A server message id: 32 lower-case hex characters (§10)."""
    return secrets.token_hex(16)


def new_uuid() -> str:
    """A dashed UUID, as Genesys uses for correlation ids."""
    return str(uuid.uuid4())


def iso_now() -> str:
    """Wall-clock UTC time, ISO-8601 with milliseconds and a ``Z`` (``channel.time``, §10)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(
    cls: str,
    body: object,
    *,
    kind: Literal["response", "message"] = "response",
    code: int = 200,
    tracing_id: str | None = None,
) -> Frame:
    """The §3.2 envelope. ``kind`` is the ``type`` field: ``response`` answers a request on this connection."""
    frame: Frame = {"type": kind, "class": cls, "code": code, "body": body}
    if tracing_id is not None:
        frame["tracingId"] = tracing_id
    return frame


def error(code: int, text: str, *, tracing_id: str | None = None) -> Frame:
    """An error string frame: ``class:"string"`` with a human-readable body (§6)."""
    return envelope("string", text, code=code, tracing_id=tracing_id)


def too_many_requests(error_code: int, text: str, retry_after_s: int, *, tracing_id: str | None = None) -> Frame:
    """429 ``TooManyRequestsErrorMessage`` with ``retryAfter`` in seconds (§5.4, §8)."""
    body = {"errorCode": error_code, "errorMessage": text, "retryAfter": retry_after_s}
    return envelope("TooManyRequestsErrorMessage", body, code=429, tracing_id=tracing_id)


def connection_closed() -> Frame:
    """``ConnectionClosedEvent {}``: the server is about to drop this connection (§5.4)."""
    return envelope("ConnectionClosedEvent", {}, kind="message")


def logout_event() -> Frame:
    """``LogoutEvent {}``: the authenticated session was revoked (§4.2, §5.4)."""
    return envelope("LogoutEvent", {}, kind="message")
