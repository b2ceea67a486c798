"""What :class:`~bridge.genesys.protocol.GuestProtocol` reports: its states, pending requests and events.

Events are frozen dataclasses; the session actor dispatches on them with ``match``. Every field added
after the first release has a default, so older constructors keep working.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from bridge.genesys.frames import StructuredMessage

__all__ = [
    "CONFIGURE_ACTIONS",
    "SESSION_ERROR_CODES",
    "AgentMessage",
    "AgentTyping",
    "AttachmentDeleted",
    "ConfigurationReceived",
    "Configured",
    "ConnectionClosed",
    "ConversationDisconnected",
    "EchoReplied",
    "ErrorReceived",
    "JwtIssued",
    "LoggedOut",
    "MessageEchoed",
    "PendingRequest",
    "PresenceJoined",
    "ProtocolEvent",
    "ProtocolState",
    "RateLimited",
    "RequestKind",
    "SessionCleared",
    "SessionClosed",
    "SessionExpired",
    "UnknownFrame",
    "UploadFailed",
    "UploadSucceeded",
    "UploadUrlIssued",
]


class ProtocolState(enum.Enum):
    """Where one connection's protocol stands."""

    DISCONNECTED = "disconnected"  # no socket
    CONNECTED = "connected"  # socket open, configureSession not sent yet
    CONFIGURING = "configuring"  # configureSession sent, waiting for SessionResponse
    CONFIGURED = "configured"  # SessionResponse connected:true; messages may flow
    READ_ONLY = "read_only"  # SessionResponse readOnly or a ReadOnly Disconnect (§5.3): onMessage → 409
    CLOSED = "closed"  # the session is gone (expired, cleared, closed by server, closeSession)


#: Wire actions that configure a session (§4.1).
CONFIGURE_ACTIONS: Final = frozenset({"configureSession", "configureAuthenticatedSession"})
#: Error codes about the session, not about the request they answer: 4006 expired, 4007 not found (§6;
#: KMP ends the session on both).
SESSION_ERROR_CODES: Final = frozenset({4006, 4007})

_ATTACHMENT_ACTIONS: Final = frozenset({"onAttachment", "getAttachment", "deleteAttachment"})


class RequestKind(enum.Enum):
    """What a request is, as far as answering it goes (derived from its action and event)."""

    CONFIGURE = "configure"  # configureSession / configureAuthenticatedSession (§4.1, §4.2)
    MESSAGE = "message"  # onMessage with text, a button response and/or attachments (§4.3 a–e)
    PRESENCE = "presence"  # onMessage Presence Join / Clear (§4.3g)
    TYPING = "typing"  # onMessage Typing (§4.3f); never kept pending
    ATTACHMENT = "attachment"  # onAttachment / getAttachment / deleteAttachment (§4.6)
    OTHER = "other"  # echo, getJwt, closeSession, getConfiguration


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A request sent and not yet answered: its ``tracingId``, ``action`` and what it carried.

    ``action`` is the wire action (``onMessage`` also for typing and presence); ``event`` tells those
    apart: ``None`` for a real message, else ``"Typing"``, ``"Join"`` or ``"Clear"``. ``attachment_id``
    is the attachment an attachment action is about.

    What an ``onMessage`` carried decides which untraced errors it may own (§6, §10): ``has_text`` (the
    caller's own text, so 4011 is possible), ``has_attributes`` (custom attributes, so 4013 is possible)
    and ``attachment_ids`` (referenced uploads, so 4008–4010 are possible).
    """

    tracing_id: str
    action: str
    attachment_id: str | None = None
    event: str | None = None
    has_text: bool = False
    has_attributes: bool = False
    attachment_ids: tuple[str, ...] = ()

    @property
    def kind(self) -> RequestKind:
        """What the request is (see :class:`RequestKind`)."""
        if self.action == "onMessage":
            if self.event is None:
                return RequestKind.MESSAGE
            return RequestKind.TYPING if self.event == "Typing" else RequestKind.PRESENCE
        if self.action in CONFIGURE_ACTIONS:
            return RequestKind.CONFIGURE
        if self.action in _ATTACHMENT_ACTIONS:
            return RequestKind.ATTACHMENT
        return RequestKind.OTHER

    def names_attachment(self, attachment_id: str) -> bool:
        """Whether this request is about, or references, ``attachment_id``."""
        return self.attachment_id == attachment_id or attachment_id in self.attachment_ids


@dataclass(frozen=True, slots=True)
class Configured:
    """``SessionResponse`` with ``connected:true`` (§5.1). Missing fields are defaulted."""

    new_session: bool
    read_only: bool
    max_custom_data_bytes: int = 2048
    allowed_mime_types: tuple[str, ...] = ()  # empty: the server said nothing; "*/*" means any
    max_file_size_kb: int | None = None
    blocked_extensions: tuple[str, ...] = ()
    duration_s: int | None = None
    expires_at: datetime | None = None
    cleared_existing_session: bool = False


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """``SessionResponse`` with ``connected:false``: the answer to ``closeSession`` (§4.7)."""


@dataclass(frozen=True, slots=True)
class MessageEchoed:
    """An Inbound StructuredMessage: our own message accepted by Genesys (or sent from another connection).

    ``request`` is set when ``tracing_id`` matches a pending ``onMessage`` of ours (§4.3 acknowledgement).
    """

    message: StructuredMessage
    tracing_id: str | None
    request: PendingRequest | None


@dataclass(frozen=True, slots=True)
class AgentMessage:
    """An Outbound Text/Structured message from an agent, bot or the system (§5.2)."""

    message: StructuredMessage


@dataclass(frozen=True, slots=True)
class AgentTyping:
    """Outbound Typing event (§5.3); ``duration_ms`` defaults to 5000 when absent."""

    message: StructuredMessage
    duration_ms: int


@dataclass(frozen=True, slots=True)
class ConversationDisconnected:
    """Outbound Presence Disconnect (§5.3). ``read_only`` from ``metadata.readOnly == "true"``."""

    message: StructuredMessage
    read_only: bool


@dataclass(frozen=True, slots=True)
class PresenceJoined:
    """Outbound Presence Join (§5.3): the agent side joined the conversation."""

    message: StructuredMessage


@dataclass(frozen=True, slots=True)
class EchoReplied:
    """The answer to our ``echo`` health check (§4.4), with refreshed session timing when present."""

    tracing_id: str | None
    duration_s: int | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class JwtIssued:
    """``JwtResponse`` (§4.5): bearer for REST history. ``expires_at`` is epoch seconds."""

    jwt: str = field(repr=False)
    expires_at: float
    request: PendingRequest | None = None


@dataclass(frozen=True, slots=True)
class UploadUrlIssued:
    """``PresignedUrlResponse`` (§4.6 step 2): PUT the bytes to ``url`` with every header in ``headers``."""

    attachment_id: str
    url: str = field(repr=False)
    headers: Mapping[str, str]
    request: PendingRequest | None
    refresh: bool = False  # a ``getAttachment`` download-URL refresh (empty headers), not an upload target


@dataclass(frozen=True, slots=True)
class UploadSucceeded:
    """``UploadSuccessEvent`` (§4.6 step 4)."""

    attachment_id: str
    download_url: str | None


@dataclass(frozen=True, slots=True)
class UploadFailed:
    """``UploadFailureEvent`` or ``GenerateUrlError`` (§4.6)."""

    attachment_id: str | None
    code: int | None
    detail: str
    request: PendingRequest | None = None


@dataclass(frozen=True, slots=True)
class SessionExpired:
    """``SessionExpiredEvent`` or error 4006 (§5.4, §6)."""


@dataclass(frozen=True, slots=True)
class SessionCleared:
    """``SessionClearedEvent`` (§5.4): the conversation was cleared."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """``ConnectionClosedEvent`` (§5.4): the server drops this connection. Do not reconnect blindly.

    ``reason`` reads both ``reason`` and ``reasonCode`` (the sources disagree).
    """

    reason: str | None


@dataclass(frozen=True, slots=True)
class LoggedOut:
    """``LogoutEvent`` (§5.4)."""


@dataclass(frozen=True, slots=True)
class RateLimited:
    """429/4029 ``TooManyRequestsErrorMessage`` (§5.4, §8): retry ``request`` after ``retry_after_s``."""

    retry_after_s: float
    code: int
    detail: str
    request: PendingRequest | None


@dataclass(frozen=True, slots=True)
class ErrorReceived:
    """An error frame (§6): ``code`` (400, 403, 409, 4011, 4013, 5000, ...) and its text.

    ``request`` is the request it answers: the one with its ``tracingId``, or, for an untraced error,
    the pending request that can legally receive that error (see :mod:`bridge.genesys.pending`); ``None``
    when no request can. When :attr:`ends_session` is true the error is about the session (4006/4007),
    not a request: untraced, it has no ``request``; the caller ends the session either way.
    """

    code: int
    detail: str
    request: PendingRequest | None

    @property
    def ends_session(self) -> bool:
        """Whether the code says the session is gone (4006 expired, 4007 not found, §6)."""
        return self.code in SESSION_ERROR_CODES


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    """A frame of a class we do not model, or one we could not parse. Reported, never fatal."""

    frame_class: str
    raw: Any
    reason: str = "unknown_class"  # not_json | not_object | unknown_class | invalid_body | unhandled
    code: int | None = None


@dataclass(frozen=True, slots=True)
class AttachmentDeleted:
    """``AttachmentDeletedResponse`` (§4.6): the upload was discarded."""

    attachment_id: str | None
    request: PendingRequest | None = None


@dataclass(frozen=True, slots=True)
class ConfigurationReceived:
    """``GetConfigurationResponse`` (§4.8)."""

    max_custom_data_bytes: int | None
    allowed_mime_types: tuple[str, ...] = ()
    max_file_size_kb: int | None = None
    blocked_extensions: tuple[str, ...] = ()
    message_routing_enabled: bool | None = None
    session_duration_s: int | None = None
    request: PendingRequest | None = None


ProtocolEvent = (
    Configured
    | SessionClosed
    | MessageEchoed
    | AgentMessage
    | AgentTyping
    | ConversationDisconnected
    | PresenceJoined
    | EchoReplied
    | JwtIssued
    | UploadUrlIssued
    | UploadSucceeded
    | UploadFailed
    | SessionExpired
    | SessionCleared
    | ConnectionClosed
    | LoggedOut
    | RateLimited
    | ErrorReceived
    | UnknownFrame
    | AttachmentDeleted
    | ConfigurationReceived
)
