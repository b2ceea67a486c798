"""Server frame bodies → protocol events: the pure half of the Guest API receive path (§4–§6).

:class:`bridge.genesys.protocol.GuestProtocol` decides *which* pending request a frame answers and what
the frame does to the session state; the functions here only turn a parsed body (and that request) into
the event the caller sees, reading Genesys' loosely typed fields leniently. They hold no state and never
raise on what the peer sends.
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime
from typing import Any, Final

from bridge.genesys.events import (
    AgentTyping,
    ConfigurationReceived,
    Configured,
    ConversationDisconnected,
    EchoReplied,
    PendingRequest,
    PresenceJoined,
    ProtocolEvent,
    RateLimited,
    UnknownFrame,
    UploadUrlIssued,
)
from bridge.genesys.frames import (
    GetConfigurationResponse,
    PresignedUrlResponse,
    ServerFrame,
    SessionResponse,
    StructuredMessage,
    TooManyRequestsErrorMessage,
    lenient_int,
)
from bridge.genesys.outgoing import DEFAULT_MAX_CUSTOM_DATA_BYTES

__all__ = [
    "DEFAULT_RETRY_AFTER_S",
    "DEFAULT_TYPING_DURATION_MS",
    "MAX_RETRY_AFTER_S",
    "MAX_SESSION_LIFETIME_S",
    "configuration_received",
    "configured",
    "echo_replied",
    "epoch_to_datetime",
    "outbound_events",
    "rate_limited",
    "retry_after",
    "retry_after_header",
    "session_lifetime_s",
    "upload_url_issued",
]

#: Agent typing indicator lifetime when the event carries no ``duration`` (§5.3, KMP fallback).
DEFAULT_TYPING_DURATION_MS: Final = 5000
#: Back-off when a 429/4029 carries no ``retryAfter``, or an HTTP 429 no usable ``Retry-After`` (§8: the
#: fixture and the real log both say 3).
DEFAULT_RETRY_AFTER_S: Final = 3.0
#: Upper bound on a server-sent ``retryAfter``: a garbled value must not park a session for hours.
MAX_RETRY_AFTER_S: Final = 300.0
#: The longest session lifetime taken from Genesys: two years, past the 18 months a deployment may set
#: (§8). A longer ``durationSeconds`` (or one that is not positive) is garbled, and is ignored.
MAX_SESSION_LIFETIME_S: Final = 2 * 366 * 24 * 3600


def epoch_to_datetime(value: object) -> datetime | None:
    """Epoch seconds (number or numeric string, §4.4/§5.1) → aware UTC datetime; ``None`` if unusable."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]  # str/int/float; anything else is caught below
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past a float's range
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    if seconds > 1e11:  # defensively accept milliseconds [INF]: 1e11 s is the year 5138
        seconds /= 1000.0
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def session_lifetime_s(value: int | None) -> int | None:
    """``durationSeconds`` (§5.1, §4.4), sane: ``None`` (not given) unless between 1 s and
    :data:`MAX_SESSION_LIFETIME_S`. A garbled value must not be taken: the expiry is computed from it."""
    return value if value is not None and 0 < value <= MAX_SESSION_LIFETIME_S else None


def retry_after(value: float | None) -> float:
    """``retryAfter`` seconds, sane: default when absent or not finite, clamped to [0, MAX_RETRY_AFTER_S]."""
    if value is None or not math.isfinite(value):
        return DEFAULT_RETRY_AFTER_S
    return min(max(0.0, value), MAX_RETRY_AFTER_S)


def retry_after_header(value: str | None) -> float:
    """An HTTP 429's ``Retry-After`` header in seconds (REST and the WebSocket upgrade, §8).

    Absent, or an HTTP date (Genesys sends seconds; a date is not worth parsing for a retry), gives
    :data:`DEFAULT_RETRY_AFTER_S`; the rest is clamped as :func:`retry_after` clamps ``retryAfter``.
    """
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        seconds = None
    return retry_after(seconds)


def _is_true(value: object) -> bool:
    """``metadata.readOnly`` is the string ``"true"`` in real traffic (§5.3); accept a bool too."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() == "true"


def _mime_types(media: Any) -> tuple[str, ...]:
    inbound = getattr(media, "inbound", None)
    if inbound is None:
        return ()
    return tuple(ft.type for ft in inbound.file_types)


def _max_file_kb(media: Any) -> int | None:
    inbound = getattr(media, "inbound", None)
    return None if inbound is None else inbound.max_file_size_kb


@functools.lru_cache(maxsize=64)
def _shared(values: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple per distinct list. Every session of a deployment is sent the same media lists, and each
    keeps its ``Configured`` for its whole life: about 0.8 KiB of strings apiece (docs/performance.md)."""
    return values


def configured(body: SessionResponse) -> Configured:
    """The ``Configured`` event of a ``SessionResponse`` with ``connected: true`` (§4.1, §5.1)."""
    return Configured(
        new_session=bool(body.new_session),
        read_only=bool(body.read_only),
        max_custom_data_bytes=(
            body.max_custom_data_bytes
            if body.max_custom_data_bytes is not None and body.max_custom_data_bytes > 0
            else DEFAULT_MAX_CUSTOM_DATA_BYTES
        ),
        allowed_mime_types=_shared(_mime_types(body.allowed_media)),
        max_file_size_kb=_max_file_kb(body.allowed_media),
        blocked_extensions=_shared(tuple(body.blocked_extensions)),
        duration_s=session_lifetime_s(body.duration_seconds),
        expires_at=epoch_to_datetime(body.expiration_date),
        cleared_existing_session=bool(body.cleared_existing_session),
    )


def configuration_received(body: GetConfigurationResponse, request: PendingRequest | None) -> ConfigurationReceived:
    """The answer to ``getConfiguration`` (§4.8)."""
    return ConfigurationReceived(
        max_custom_data_bytes=body.max_custom_data_bytes,
        allowed_mime_types=_mime_types(body.allowed_media),
        max_file_size_kb=_max_file_kb(body.allowed_media),
        blocked_extensions=tuple(body.blocked_extensions),
        message_routing_enabled=body.message_routing_enabled,
        session_duration_s=session_lifetime_s(body.session_duration_seconds),
        request=request,
    )


def rate_limited(frame: ServerFrame, body: TooManyRequestsErrorMessage, request: PendingRequest | None) -> RateLimited:
    """A ``TooManyRequestsErrorMessage`` (§8): its code, else the frame's, else 429."""
    code = body.error_code or (frame.code if frame.code not in (None, 200) else 429)
    detail = body.error_message or body.message or ""
    return RateLimited(retry_after(body.retry_after), code, detail, request)


def upload_url_issued(body: PresignedUrlResponse, request: PendingRequest | None) -> UploadUrlIssued:
    """A presigned URL (§4.6): an upload target, or a download-URL refresh (answer to ``getAttachment``,
    or no headers but a file size)."""
    refresh = (not body.headers and body.file_size is not None) or (
        request is not None and request.action == "getAttachment"
    )
    return UploadUrlIssued(body.attachment_id, body.url, body.headers, request, refresh)


def echo_replied(tracing_id: str | None, msg: StructuredMessage) -> EchoReplied:
    """The reply to ``echo`` (§4.4), with the session lifetime its metadata carries."""
    return EchoReplied(
        tracing_id=tracing_id,
        duration_s=session_lifetime_s(lenient_int(msg.metadata.get("durationSeconds"))),
        expires_at=epoch_to_datetime(msg.metadata.get("expirationDate")),
    )


def outbound_events(msg: StructuredMessage) -> list[ProtocolEvent]:
    """The events of an outbound ``Event`` message (§5.3): agent typing, Presence ``Join``, Presence ``Disconnect`` (the
    caller moves a configured session to read-only when one says so), anything else as ``UnknownFrame``."""
    out: list[ProtocolEvent] = []
    for event in msg.events:
        kind = event.get("eventType") if isinstance(event, dict) else None
        if kind == "Typing":
            typing = event.get("typing")
            duration = lenient_int(typing.get("duration")) if isinstance(typing, dict) else None
            out.append(AgentTyping(msg, duration if duration and duration > 0 else DEFAULT_TYPING_DURATION_MS))
            continue
        presence = event.get("presence") if kind == "Presence" else None
        if isinstance(presence, dict) and presence.get("type") == "Disconnect":
            out.append(ConversationDisconnected(msg, _is_true(msg.metadata.get("readOnly"))))
            continue
        if isinstance(presence, dict) and presence.get("type") == "Join":
            out.append(PresenceJoined(msg))
            continue
        out.append(UnknownFrame("StructuredMessage", msg.model_dump(by_alias=True), "unhandled"))
    return out
