"""Typed Guest API server frames (protocol reference §3.2, §5, §6). Pure: no I/O.

:func:`parse_server_frame` turns one text frame into a :class:`ServerFrame` (envelope + a typed body chosen
by ``class`` through :data:`BODY_MODELS`) or an :class:`UnparsedFrame` (not JSON, not an object, an unknown
``class``, or a body that does not fit its model). It never raises. Dispatch is on ``class``, never on
``type`` (§3.2: fixtures disagree on ``type``). Unknown fields are kept (``extra="allow"``). The client
actions (§3.1, §4) are in :mod:`bridge.genesys.actions`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bridge.genesys import wire_json

__all__ = [
    "BODY_MODELS",
    "AllowedMedia",
    "AttachmentDeletedResponse",
    "ChannelInfo",
    "ConnectionClosedEvent",
    "ErrorBody",
    "FileType",
    "GenerateUrlError",
    "GetConfigurationResponse",
    "InboundMedia",
    "JwtResponse",
    "LogoutEvent",
    "Participant",
    "PresignedUrlResponse",
    "ResumeTokenResponse",
    "ServerBody",
    "ServerFrame",
    "SessionClearedEvent",
    "SessionExpiredEvent",
    "SessionResponse",
    "StructuredMessage",
    "TooManyRequestsErrorMessage",
    "UnparsedFrame",
    "UploadFailureEvent",
    "UploadSuccessEvent",
    "lenient_int",
    "parse_server_frame",
]


class _Lenient(BaseModel):
    """Server-side model: unknown fields kept, camelCase aliases, immutable."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


# =====================================================================================================
# Server → client (§3.2, §5)
# =====================================================================================================


class Participant(_Lenient):
    """``channel.from`` / ``channel.to`` (§5.2)."""

    nickname: str | None = None
    first_name: str | None = Field(default=None, alias="firstName")
    last_name: str | None = Field(default=None, alias="lastName")
    image: str | None = None


def _object_or_none(value: object) -> object:
    # A participant or channel that is not an object is dropped rather than failing the whole message.
    return value if isinstance(value, (dict, BaseModel)) else None


def _items(value: object) -> list[Any]:
    """``content``/``events``: null → []; a non-list or a non-object item is wrapped, never fatal (§3.2)."""
    if value is None:
        return []
    if not isinstance(value, list):
        value = [value]
    return [item if isinstance(item, dict) else {"value": item} for item in value]


class ChannelInfo(_Lenient):
    """``channel`` of a StructuredMessage (§5.2). ``time`` may be null in history (§9)."""

    time: str | None = None
    message_id: str | None = Field(default=None, alias="messageId")
    type: str | None = None
    from_: Participant | None = Field(default=None, alias="from")
    to: Participant | None = None

    _lenient_participants = field_validator("from_", "to", mode="before")(_object_or_none)


class StructuredMessage(_Lenient):
    """Body of a ``StructuredMessage`` frame (§5.2), live or from history (§9).

    ``content`` and ``events`` stay raw dicts: content normalisation is lenient per item
    (``bridge.genesys.normalize``) so that one odd item never loses the whole message.
    """

    id: str | None = None
    type: str = "Text"
    text: str | None = None
    direction: str | None = None
    originating_entity: str | None = Field(default=None, alias="originatingEntity")
    originating_message_id: str | None = Field(default=None, alias="originatingMessageId")
    channel: ChannelInfo | None = None
    content: list[dict[str, Any]] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    _lenient_channel = field_validator("channel", mode="before")(_object_or_none)

    @field_validator("content", "events", mode="before")
    @classmethod
    def _lenient_items(cls, value: object) -> list[Any]:
        return _items(value)

    @field_validator("metadata", mode="before")
    @classmethod
    def _lenient_metadata(cls, value: object) -> object:
        return value if isinstance(value, dict) else {}


class FileType(_Lenient):
    """One allowed inbound MIME type (``*/*`` means any), §4.6."""

    type: str


class InboundMedia(_Lenient):
    """``allowedMedia.inbound`` (§5.1)."""

    file_types: list[FileType] = Field(default_factory=list, alias="fileTypes")
    max_file_size_kb: int | None = Field(default=None, alias="maxFileSizeKB")


class AllowedMedia(_Lenient):
    """``allowedMedia`` (§5.1, §4.8)."""

    inbound: InboundMedia | None = None


class SessionResponse(_Lenient):
    """``SessionResponse`` (§5.1). Only ``connected`` is required; the minimal real frame is
    ``{"connected":true,"newSession":true}``."""

    connected: bool
    new_session: bool | None = Field(default=None, alias="newSession")
    read_only: bool | None = Field(default=None, alias="readOnly")
    cleared_existing_session: bool | None = Field(default=None, alias="clearedExistingSession")
    allowed_media: AllowedMedia | None = Field(default=None, alias="allowedMedia")
    blocked_extensions: list[str] = Field(default_factory=list, alias="blockedExtensions")
    max_custom_data_bytes: int | None = Field(default=None, alias="maxCustomDataBytes")
    duration_seconds: int | None = Field(default=None, alias="durationSeconds")
    expiration_date: float | None = Field(default=None, alias="expirationDate")  # epoch seconds
    auto_started: bool | None = Field(default=None, alias="autoStarted")


class PresignedUrlResponse(_Lenient):
    """``PresignedUrlResponse`` (§4.6 step 2, and the ``getAttachment`` refresh with empty headers)."""

    attachment_id: str = Field(alias="attachmentId")
    url: str = Field(repr=False)
    headers: dict[str, str] = Field(default_factory=dict)
    file_name: str | None = Field(default=None, alias="fileName")
    file_size: int | None = Field(default=None, alias="fileSize")
    file_type: str | None = Field(default=None, alias="fileType")


class AttachmentDeletedResponse(_Lenient):
    """``AttachmentDeletedResponse`` (§4.6)."""

    attachment_id: str | None = Field(default=None, alias="attachmentId")


class UploadSuccessEvent(_Lenient):
    """``UploadSuccessEvent`` (§4.6 step 4)."""

    attachment_id: str = Field(alias="attachmentId")
    download_url: str | None = Field(default=None, alias="downloadUrl")
    timestamp: str | None = None


class UploadFailureEvent(_Lenient):
    """``UploadFailureEvent`` (§4.6 step 4)."""

    attachment_id: str | None = Field(default=None, alias="attachmentId")
    error_code: int | None = Field(default=None, alias="errorCode")
    error_message: str | None = Field(default=None, alias="errorMessage")
    timestamp: str | None = None


class GenerateUrlError(_Lenient):
    """``GenerateUrlError`` (§4.6 step 2): presign refused, e.g. 4001 type not allowed."""

    attachment_id: str | None = Field(default=None, alias="attachmentId")
    error_code: int | None = Field(default=None, alias="errorCode")
    error_message: str | None = Field(default=None, alias="errorMessage")
    name: str | None = None
    message: str | None = None


class ConnectionClosedEvent(_Lenient):
    """``ConnectionClosedEvent`` (§5.4). The key is ``reason`` in KMP, ``reasonCode`` in the schema: both read."""

    reason: str | None = None
    reason_code: str | None = Field(default=None, alias="reasonCode")

    @property
    def effective_reason(self) -> str | None:
        """``reason`` if present, else ``reasonCode`` (§5.4 disagreement 1)."""
        return self.reason if self.reason is not None else self.reason_code


class LogoutEvent(_Lenient):
    """``LogoutEvent`` (§5.4): the authenticated session was revoked."""


class SessionExpiredEvent(_Lenient):
    """``SessionExpiredEvent`` (§5.4): the session TTL elapsed."""


class SessionClearedEvent(_Lenient):
    """``SessionClearedEvent`` (§5.4): the conversation was cleared from some device."""


class JwtResponse(_Lenient):
    """``JwtResponse`` (§4.5): ``exp`` is epoch seconds."""

    jwt: str = Field(repr=False)
    exp: float


class GetConfigurationResponse(_Lenient):
    """``GetConfigurationResponse`` (§4.8)."""

    allowed_media: AllowedMedia | None = Field(default=None, alias="allowedMedia")
    blocked_extensions: list[str] = Field(default_factory=list, alias="blockedExtensions")
    max_custom_data_bytes: int | None = Field(default=None, alias="maxCustomDataBytes")
    message_routing_enabled: bool | None = Field(default=None, alias="messageRoutingEnabled")
    session_duration_seconds: int | None = Field(default=None, alias="sessionDurationSeconds")


class TooManyRequestsErrorMessage(_Lenient):
    """``TooManyRequestsErrorMessage`` (§5.4): ``errorCode`` is 4029 (KMP fixture) or 429 (real log)."""

    error_code: int | None = Field(default=None, alias="errorCode")
    error_message: str | None = Field(default=None, alias="errorMessage")
    retry_after: float | None = Field(default=None, alias="retryAfter")  # seconds
    name: str | None = None
    message: str | None = None


class ResumeTokenResponse(_Lenient):
    """``ResumeTokenResponse`` (§4.10): schema-only, semantics unknown [?]."""

    resume_token: str | None = Field(default=None, alias="resumeToken", repr=False)
    exp: float | None = None


class ErrorBody(_Lenient):
    """``Error`` class body: the schema is vague, so every field is optional [SWAG]."""

    error_code: int | None = Field(default=None, alias="errorCode")
    error_message: str | None = Field(default=None, alias="errorMessage")
    message: str | None = None
    code: int | str | None = None


ServerBody = (
    SessionResponse
    | StructuredMessage
    | PresignedUrlResponse
    | AttachmentDeletedResponse
    | UploadFailureEvent
    | UploadSuccessEvent
    | ConnectionClosedEvent
    | LogoutEvent
    | SessionExpiredEvent
    | JwtResponse
    | GetConfigurationResponse
    | GenerateUrlError
    | TooManyRequestsErrorMessage
    | ResumeTokenResponse
    | SessionClearedEvent
    | ErrorBody
)
"""A typed body; the ``string`` class carries a plain ``str`` instead (§3.2, §6)."""

#: ``class`` → body model (§3.2 ``MessageDataType``). ``string`` is handled apart (its body is text);
#: ``Unknown`` and anything else become :class:`UnparsedFrame`.
BODY_MODELS: dict[str, type[ServerBody]] = {
    "SessionResponse": SessionResponse,
    "StructuredMessage": StructuredMessage,
    "PresignedUrlResponse": PresignedUrlResponse,
    "AttachmentDeletedResponse": AttachmentDeletedResponse,
    "UploadFailureEvent": UploadFailureEvent,
    "UploadSuccessEvent": UploadSuccessEvent,
    "ConnectionClosedEvent": ConnectionClosedEvent,
    "LogoutEvent": LogoutEvent,
    "SessionExpiredEvent": SessionExpiredEvent,
    "JwtResponse": JwtResponse,
    "GetConfigurationResponse": GetConfigurationResponse,
    "GenerateUrlError": GenerateUrlError,
    "TooManyRequestsErrorMessage": TooManyRequestsErrorMessage,
    "ResumeTokenResponse": ResumeTokenResponse,
    "SessionClearedEvent": SessionClearedEvent,
    "Error": ErrorBody,
}

STRING_CLASS = "string"


@dataclass(frozen=True, slots=True)
class ServerFrame:
    """One parsed server frame (§3.2). ``body`` is a model from :data:`BODY_MODELS`, or ``str`` for ``string``.

    ``code`` is ``None`` when absent or not an integer; ``frame_type`` is informational only.
    """

    frame_class: str
    body: ServerBody | str
    code: int | None = None
    tracing_id: str | None = None
    frame_type: str | None = None

    @property
    def is_error(self) -> bool:
        """A ``string``/``Error`` frame with a non-200 code (§6)."""
        return self.frame_class in (STRING_CLASS, "Error") and self.code is not None and self.code != 200


UnparsedReason = Literal["not_json", "not_object", "unknown_class", "invalid_body"]


@dataclass(frozen=True, slots=True)
class UnparsedFrame:
    """A frame we could not type: ``raw`` is the decoded object (or the text when not JSON)."""

    reason: UnparsedReason
    raw: Any
    frame_class: str | None = None
    code: int | None = None
    tracing_id: str | None = None
    error: str | None = None


def lenient_int(value: object) -> int | None:
    """An int from an int, a finite float or a numeric string; ``None`` for anything else.

    Genesys sends numbers as strings in places (session timing metadata, §4.4) and sizes under several
    keys (§5.2); a bool is an int subclass in Python but a nonsense number here.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def parse_server_frame(data: str | bytes) -> ServerFrame | UnparsedFrame:
    """Parse one WebSocket text frame. Never raises (§3.2: unknown is reported, never fatal)."""
    try:
        obj = wire_json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return UnparsedFrame(reason="not_json", raw=data, error=str(exc)[:200])
    if not isinstance(obj, dict):
        return UnparsedFrame(reason="not_object", raw=obj)
    raw_class = obj.get("class")
    frame_class = raw_class if isinstance(raw_class, str) else None
    code = lenient_int(obj.get("code"))
    raw_tracing = obj.get("tracingId")
    tracing_id = raw_tracing if isinstance(raw_tracing, str) else None
    raw_type = obj.get("type")
    frame_type = raw_type if isinstance(raw_type, str) else None
    body = obj.get("body")

    if frame_class == STRING_CLASS:
        text = body if isinstance(body, str) else ("" if body is None else json.dumps(body, default=str))
        return ServerFrame(STRING_CLASS, text, code, tracing_id, frame_type)
    model = BODY_MODELS.get(frame_class) if frame_class is not None else None
    if model is None or frame_class is None:
        return UnparsedFrame(reason="unknown_class", raw=obj, frame_class=frame_class, code=code, tracing_id=tracing_id)
    if body is None:
        body = {}  # events such as SessionExpiredEvent may come without a body at all
    if isinstance(body, str) and frame_class == "Error":
        # An ``Error`` frame whose body is a plain message: keep it as text, like ``string``.
        return ServerFrame("Error", body, code, tracing_id, frame_type)
    try:
        parsed = model.model_validate(body)
    except (ValidationError, ValueError, TypeError, RecursionError) as exc:
        return UnparsedFrame(
            reason="invalid_body",
            raw=obj,
            frame_class=frame_class,
            code=code,
            tracing_id=tracing_id,
            error=str(exc)[:500],
        )
    return ServerFrame(frame_class, parsed, code, tracing_id, frame_type)
