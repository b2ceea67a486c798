"""Sans-I/O Guest API session protocol (protocol reference §3–§7).

Feed it what happened (``connection_made``, ``receive(frame)``, ``connection_lost``) and what the
caller wants (``configure``, ``send_message``, ``send_typing`` ...). Collect the frames to write with
``frames_to_send()`` and what happened with ``events_received()``. It does no I/O and knows no clock:
rate budgets and timeouts belong to the caller (the session actor).

Rules it enforces:
- ``configure`` is the first frame on a connection; every other intent before ``Configured`` raises
  ``GenesysProtocolError`` naming the state (§4.1 "do not send any other action before SessionResponse").
- Text and custom attributes are size-checked before a frame is built (§4.3, §8): ``CommandRejected``
  with reason ``message_too_long`` / ``attributes_too_large``.
- Dispatch is on ``class``, never on ``type`` (§3.2). Unknown classes become ``UnknownFrame`` events.
- Error frames are attributed to the pending request with the same ``tracingId``; failing that, to the
  oldest pending ``onMessage`` (Genesys does not always echo ``tracingId`` on errors [INF]).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.contract.content import ButtonResponse
from bridge.genesys.frames import StructuredMessage

__all__ = [
    "Configured",
    "ConnectionClosed",
    "ConversationDisconnected",
    "EchoReplied",
    "ErrorReceived",
    "GuestProtocol",
    "JwtIssued",
    "LoggedOut",
    "MessageEchoed",
    "MessageReceived",
    "PendingRequest",
    "ProtocolEvent",
    "ProtocolState",
    "RateLimited",
    "SessionCleared",
    "SessionClosed",
    "SessionExpired",
    "TypingReceived",
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


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A request sent and not yet answered: its ``tracingId`` and ``action`` (and attachment id, if any)."""

    tracing_id: str
    action: str
    attachment_id: str | None = None


# --- events -------------------------------------------------------------------------------------------


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
class MessageReceived:
    """An Outbound Text/Structured message from an agent, bot or the system (§5.2)."""

    message: StructuredMessage


@dataclass(frozen=True, slots=True)
class TypingReceived:
    """Outbound Typing event (§5.3); ``duration_ms`` defaults to 5000 when absent."""

    message: StructuredMessage
    duration_ms: int


@dataclass(frozen=True, slots=True)
class ConversationDisconnected:
    """Outbound Presence Disconnect (§5.3). ``read_only`` from ``metadata.readOnly == "true"``."""

    message: StructuredMessage
    read_only: bool


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


@dataclass(frozen=True, slots=True)
class UploadUrlIssued:
    """``PresignedUrlResponse`` (§4.6 step 2): PUT the bytes to ``url`` with every header in ``headers``."""

    attachment_id: str
    url: str = field(repr=False)
    headers: Mapping[str, str]
    request: PendingRequest | None


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
    """An error frame (§6): ``code`` (400, 403, 409, 4011, 4013, 5000, ...) and its text."""

    code: int
    detail: str
    request: PendingRequest | None


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    """A frame of a class we do not model, or one we could not parse. Reported, never fatal."""

    frame_class: str
    raw: Any


ProtocolEvent = (
    Configured
    | SessionClosed
    | MessageEchoed
    | MessageReceived
    | TypingReceived
    | ConversationDisconnected
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
)


# --- the protocol -------------------------------------------------------------------------------------


class GuestProtocol:
    """One guest session's protocol state across connections. Pure: no I/O, no clock.

    The caller owns the socket: call :meth:`connection_made` when it opens, :meth:`receive` for each text
    frame, :meth:`connection_lost` when it closes; after each call, write :meth:`frames_to_send` and handle
    :meth:`events_received`.
    """

    def __init__(self, *, token: str, deployment_id: str) -> None:
        raise NotImplementedError

    @property
    def state(self) -> ProtocolState:
        raise NotImplementedError

    @property
    def limits(self) -> Configured | None:
        """The last ``Configured`` seen, for size limits and allowed media."""
        raise NotImplementedError

    # lifecycle
    def connection_made(self) -> None:
        raise NotImplementedError

    def connection_lost(self) -> list[PendingRequest]:
        """Forget the connection; return the requests that were never answered (resend after backfill)."""
        raise NotImplementedError

    def receive(self, frame: str) -> None:
        raise NotImplementedError

    # output
    def frames_to_send(self) -> list[str]:
        raise NotImplementedError

    def events_received(self) -> list[ProtocolEvent]:
        raise NotImplementedError

    # intents
    def configure(self, *, start_new: bool = False, tracing_id: str | None = None) -> None:
        raise NotImplementedError

    def send_message(
        self,
        *,
        tracing_id: str,
        text: str | None = None,
        button_response: ButtonResponse | None = None,
        attachment_ids: Sequence[str] = (),
        custom_attributes: Mapping[str, str] | None = None,
    ) -> None:
        raise NotImplementedError

    def send_typing(self, *, tracing_id: str | None = None) -> None:
        raise NotImplementedError

    def send_join(self, *, tracing_id: str | None = None, custom_attributes: Mapping[str, str] | None = None) -> None:
        raise NotImplementedError

    def clear_conversation(self, *, tracing_id: str | None = None) -> None:
        raise NotImplementedError

    def close_session(self, *, tracing_id: str | None = None) -> None:
        raise NotImplementedError

    def echo(self, *, tracing_id: str) -> None:
        raise NotImplementedError

    def request_jwt(self, *, tracing_id: str) -> None:
        raise NotImplementedError

    def request_upload(
        self, *, tracing_id: str, attachment_id: str, file_name: str, file_type: str, file_size: int
    ) -> None:
        raise NotImplementedError
