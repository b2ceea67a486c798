"""Sans-I/O Guest API session protocol (protocol reference §3–§7).

Feed it what happened (``connection_made``, ``receive(frame)``, ``connection_lost``) and what the
caller wants (``configure``, ``send_message``, ``send_typing`` ...). Collect the frames to write with
``frames_to_send()`` and what happened with ``events_received()``. It does no I/O and knows no clock:
rate budgets and timeouts belong to the caller (the session actor).

Its states, pending requests and events live in :mod:`bridge.genesys.events`, the ``onMessage`` shapes in
:mod:`bridge.genesys.outgoing`; both are re-exported here, so ``from bridge.genesys.protocol import ...``
keeps working.

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

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from bridge.contract.content import ButtonResponse
from bridge.errors import CommandRejected, GenesysProtocolError
from bridge.genesys.events import (
    AttachmentDeleted,
    ConfigurationReceived,
    Configured,
    ConnectionClosed,
    ConversationDisconnected,
    EchoReplied,
    ErrorReceived,
    JwtIssued,
    LoggedOut,
    MessageEchoed,
    MessageReceived,
    PendingRequest,
    ProtocolEvent,
    ProtocolState,
    RateLimited,
    SessionCleared,
    SessionClosed,
    SessionExpired,
    TypingReceived,
    UnknownFrame,
    UploadFailed,
    UploadSucceeded,
    UploadUrlIssued,
)
from bridge.genesys.frames import (
    AttachmentDeletedResponse,
    ClientAction,
    CloseSession,
    ConfigureSession,
    ConnectionClosedEvent,
    DeleteAttachment,
    Echo,
    ErrorBody,
    GenerateUrlError,
    GetAttachment,
    GetConfiguration,
    GetConfigurationResponse,
    GetJwt,
    JwtResponse,
    LogoutEvent,
    OnAttachment,
    OnMessage,
    OutgoingMessage,
    PresenceBody,
    PresenceEvent,
    PresignedUrlResponse,
    ResumeTokenResponse,
    ServerFrame,
    SessionClearedEvent,
    SessionExpiredEvent,
    SessionResponse,
    StructuredMessage,
    TooManyRequestsErrorMessage,
    TypingEvent,
    UnparsedFrame,
    UploadFailureEvent,
    UploadSuccessEvent,
    lenient_int,
    parse_server_frame,
)
from bridge.genesys.outgoing import (
    DEFAULT_MAX_CUSTOM_DATA_BYTES,
    MAX_TEXT_BYTES,
    attributes_channel,
    build_outgoing_message,
    custom_attributes_size,
)

__all__ = [
    "DEFAULT_MAX_CUSTOM_DATA_BYTES",
    "DEFAULT_RETRY_AFTER_S",
    "DEFAULT_TYPING_DURATION_MS",
    "MAX_RETRY_AFTER_S",
    "MAX_TEXT_BYTES",
    "AttachmentDeleted",
    "ConfigurationReceived",
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
    "build_outgoing_message",
    "custom_attributes_size",
]

#: Agent typing indicator lifetime when the event carries no ``duration`` (§5.3, KMP fallback).
DEFAULT_TYPING_DURATION_MS: Final = 5000
#: Back-off when a 429/4029 carries no ``retryAfter`` (§8: the fixture and the real log both say 3).
DEFAULT_RETRY_AFTER_S: Final = 3.0
#: Upper bound on a server-sent ``retryAfter``: a garbled value must not park a session for hours.
MAX_RETRY_AFTER_S: Final = 300.0

# Error codes with a protocol meaning beyond "this request failed" (§6).
_CODE_READ_ONLY: Final = 409
_CODE_EXPIRED: Final = 4006
_RATE_LIMIT_CODES: Final = frozenset({429, 4029})


# --- the protocol -------------------------------------------------------------------------------------

_S = ProtocolState
_ANSWERED: Final = frozenset({_S.CONFIGURED, _S.READ_ONLY})

#: Which state each intent needs (§4.1: nothing but configureSession before SessionResponse; §5.1:
#: a read-only session can still read history, echo, clear and close, but not send).
_INTENT_STATES: Final[Mapping[str, frozenset[ProtocolState]]] = {
    "configure": frozenset({_S.CONNECTED, _S.CONFIGURED, _S.READ_ONLY, _S.CLOSED}),
    "send_message": frozenset({_S.CONFIGURED}),
    "send_typing": frozenset({_S.CONFIGURED}),
    "send_join": frozenset({_S.CONFIGURED}),
    "request_upload": frozenset({_S.CONFIGURED}),
    "clear_conversation": _ANSWERED,
    "close_session": _ANSWERED,
    "echo": _ANSWERED,
    "request_jwt": _ANSWERED,
    "refresh_attachment_url": _ANSWERED,
    "delete_attachment": _ANSWERED,
    "get_configuration": _ANSWERED,
}


_CONFIGURE_ACTIONS: Final = frozenset({"configureSession", "configureAuthenticatedSession"})
_TYPING: Final = "Typing"


def _epoch_to_datetime(value: object) -> datetime | None:
    """Epoch seconds (number or numeric string, §4.4/§5.1) → aware UTC datetime; ``None`` if unusable."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]  # str/int/float; anything else is caught below
    except (TypeError, ValueError):
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    if seconds > 1e11:  # defensively accept milliseconds [INF]: 1e11 s is the year 5138
        seconds /= 1000.0
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _retry_after(value: float | None) -> float:
    """``retryAfter`` seconds, sane: default when absent or not finite, clamped to [0, MAX_RETRY_AFTER_S]."""
    if value is None or not math.isfinite(value):
        return DEFAULT_RETRY_AFTER_S
    return min(max(0.0, value), MAX_RETRY_AFTER_S)


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


class GuestProtocol:
    """One guest session's protocol state across connections. Pure: no I/O, no clock.

    The caller owns the socket: call :meth:`connection_made` when it opens, :meth:`receive` for each text
    frame, :meth:`connection_lost` when it closes; after each call, write :meth:`frames_to_send` and handle
    :meth:`events_received`.

    Intents (``configure``, ``send_message`` ...) raise ``GenesysProtocolError`` naming the state when
    the state does not allow them, and ``CommandRejected`` when the command breaks a size limit; in
    both cases nothing is queued. ``receive`` never raises on what the peer sends.

    ``id_factory`` makes the ``tracingId`` of intents called without one (default: a random UUID hex).
    """

    def __init__(
        self,
        *,
        token: str,
        deployment_id: str,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        self._token = token
        self._deployment_id = deployment_id
        self._new_id = id_factory or (lambda: uuid.uuid4().hex)
        self._state = ProtocolState.DISCONNECTED
        self._socket_open = False
        self._limits: Configured | None = None
        # Insertion-ordered: the oldest pending onMessage is the fallback owner of untraced errors.
        self._pending: dict[str, PendingRequest] = {}
        self._outbox: list[str] = []
        self._events: list[ProtocolEvent] = []

    def __repr__(self) -> str:
        return f"<GuestProtocol {self._state.value} pending={len(self._pending)}>"

    # --- inspection ----------------------------------------------------------------------------------

    @property
    def state(self) -> ProtocolState:
        """Where this connection's protocol stands."""
        return self._state

    @property
    def limits(self) -> Configured | None:
        """The last ``Configured`` seen, for size limits and allowed media."""
        return self._limits

    @property
    def connected(self) -> bool:
        """Whether a socket is open (``connection_made`` without ``connection_lost`` since)."""
        return self._socket_open

    @property
    def pending(self) -> tuple[PendingRequest, ...]:
        """Requests sent on this connection and not answered yet, oldest first."""
        return tuple(self._pending.values())

    @property
    def max_custom_data_bytes(self) -> int:
        """The custom attribute budget: from the last ``SessionResponse``, else 2048 (§4.3)."""
        return self._limits.max_custom_data_bytes if self._limits is not None else DEFAULT_MAX_CUSTOM_DATA_BYTES

    # --- lifecycle -----------------------------------------------------------------------------------

    def connection_made(self) -> None:
        """A socket opened. Next: :meth:`configure`. Allowed after ``CLOSED`` (a fresh session follows)."""
        if self._socket_open:
            raise GenesysProtocolError(f"connection_made while a connection is open (state {self._state.value})")
        self._socket_open = True
        self._pending.clear()
        self._outbox.clear()
        self._state = ProtocolState.CONNECTED

    def connection_lost(self) -> list[PendingRequest]:
        """Forget the connection; return the requests that were never answered (resend after backfill).

        Typing requests are left out: they are never acknowledged (§14.6) and not worth resending.
        Frames not yet collected by :meth:`frames_to_send` are dropped (their requests are returned).
        ``CLOSED`` stays ``CLOSED``; anything else becomes ``DISCONNECTED``.
        """
        unanswered = [p for p in self._pending.values() if p.event != _TYPING]
        self._pending.clear()
        self._outbox.clear()
        self._socket_open = False
        if self._state is not ProtocolState.CLOSED:
            self._state = ProtocolState.DISCONNECTED
        return unanswered

    def receive(self, frame: str | bytes) -> None:
        """Handle one text frame from the server. Never raises: odd frames become ``UnknownFrame`` events."""
        parsed = parse_server_frame(frame)
        if isinstance(parsed, UnparsedFrame):
            label = parsed.frame_class if parsed.frame_class is not None else f"<{parsed.reason}>"
            self._events.append(UnknownFrame(label, parsed.raw, parsed.reason, parsed.code))
            return
        self._dispatch(parsed)

    # --- output --------------------------------------------------------------------------------------

    def frames_to_send(self) -> list[str]:
        """Frames to write, in order; the buffer is emptied."""
        out, self._outbox = self._outbox, []
        return out

    def events_received(self) -> list[ProtocolEvent]:
        """Events since the last call, in order; the buffer is emptied."""
        out, self._events = self._events, []
        return out

    # --- intents -------------------------------------------------------------------------------------

    def configure(self, *, start_new: bool = False, tracing_id: str | None = None) -> None:
        """Queue ``configureSession`` (§4.1): resume (``start_new=False``) or a fresh session."""
        self._require("configure")
        tid = tracing_id or self._new_id()
        request = ConfigureSession(
            token=self._token, tracing_id=tid, deployment_id=self._deployment_id, start_new=start_new
        )
        self._send(request, PendingRequest(tid, "configureSession"))
        self._state = ProtocolState.CONFIGURING

    def send_message(
        self,
        *,
        tracing_id: str,
        text: str | None = None,
        button_response: ButtonResponse | None = None,
        attachment_ids: Sequence[str] = (),
        custom_attributes: Mapping[str, str] | None = None,
    ) -> None:
        """Queue an ``onMessage`` (§4.3). Acknowledged by ``MessageEchoed`` with this ``tracing_id``.

        Raises:
            CommandRejected: ``message_too_long`` (text over 4096 UTF-8 bytes), ``attributes_too_large``
                (over :attr:`max_custom_data_bytes`), ``schema_invalid`` (nothing to send).
            GenesysProtocolError: the state is not ``CONFIGURED``.
        """
        if text is not None:
            size = len(text.encode())
            if size > MAX_TEXT_BYTES:
                raise CommandRejected(
                    "message_too_long", f"text is {size} UTF-8 bytes; Genesys allows {MAX_TEXT_BYTES} (error 4011)"
                )
        self._check_attributes(custom_attributes)
        if text is None and button_response is None and not attachment_ids:
            raise CommandRejected("schema_invalid", "a message needs text, a button_response or attachments")
        self._require("send_message")
        message = build_outgoing_message(
            text=text,
            button_response=button_response,
            attachment_ids=attachment_ids,
            custom_attributes=custom_attributes,
        )
        self._send(
            OnMessage(token=self._token, tracing_id=tracing_id, message=message),
            PendingRequest(tracing_id, "onMessage"),
        )

    def send_typing(self, *, tracing_id: str | None = None) -> None:
        """Queue a guest typing indicator (§4.3f). Throttling (≤1 per 5 s) is the caller's job.

        Only the latest typing request stays pending: they are rarely answered (§14.6), and a 403
        (typing disabled) is attributed to it.
        """
        self._require("send_typing")
        for old in [p for p in self._pending.values() if p.event == _TYPING]:
            del self._pending[old.tracing_id]
        tid = tracing_id or self._new_id()
        message = OutgoingMessage(type="Event", events=[TypingEvent()])
        self._send(
            OnMessage(token=self._token, tracing_id=tid, message=message),
            PendingRequest(tid, "onMessage", event=_TYPING),
        )

    def send_join(self, *, tracing_id: str | None = None, custom_attributes: Mapping[str, str] | None = None) -> None:
        """Queue Presence ``Join`` (§4.3g autostart), optionally carrying custom attributes."""
        self._check_attributes(custom_attributes)
        self._require("send_join")
        self._send_presence("Join", tracing_id, custom_attributes)

    def clear_conversation(self, *, tracing_id: str | None = None) -> None:
        """Queue Presence ``Clear`` (§4.3g). Success: a 200 answer, ``SessionCleared``, ``ConnectionClosed``."""
        self._require("clear_conversation")
        self._send_presence("Clear", tracing_id, None)

    def close_session(self, *, tracing_id: str | None = None) -> None:
        """Queue ``closeSession`` (§4.7). Answered by ``SessionClosed`` (``SessionResponse connected:false``)."""
        self._require("close_session")
        tid = tracing_id or self._new_id()
        self._send(CloseSession(token=self._token, tracing_id=tid), PendingRequest(tid, "closeSession"))

    def echo(self, *, tracing_id: str) -> None:
        """Queue the ``echo`` health check (§4.4): answered by ``EchoReplied``. ≤2/min is the caller's job."""
        self._require("echo")
        self._send(Echo(token=self._token, tracing_id=tracing_id), PendingRequest(tracing_id, "echo"))

    def request_jwt(self, *, tracing_id: str) -> None:
        """Queue ``getJwt`` (§4.5): answered by ``JwtIssued``."""
        self._require("request_jwt")
        self._send(GetJwt(token=self._token, tracing_id=tracing_id), PendingRequest(tracing_id, "getJwt"))

    def request_upload(
        self, *, tracing_id: str, attachment_id: str, file_name: str, file_type: str, file_size: int
    ) -> None:
        """Queue ``onAttachment`` (§4.6 step 1): answered by ``UploadUrlIssued`` or ``UploadFailed``."""
        self._require("request_upload")
        request = OnAttachment(
            token=self._token,
            tracing_id=tracing_id,
            attachment_id=attachment_id,
            file_name=file_name,
            file_type=file_type,
            file_size=file_size,
        )
        self._send(request, PendingRequest(tracing_id, "onAttachment", attachment_id))

    def refresh_attachment_url(self, *, tracing_id: str, attachment_id: str) -> None:
        """Queue ``getAttachment`` (§4.6): answered by ``UploadUrlIssued(refresh=True)``."""
        self._require("refresh_attachment_url")
        request = GetAttachment(token=self._token, tracing_id=tracing_id, attachment_id=attachment_id)
        self._send(request, PendingRequest(tracing_id, "getAttachment", attachment_id))

    def delete_attachment(self, *, tracing_id: str, attachment_id: str) -> None:
        """Queue ``deleteAttachment`` (§4.6): answered by ``AttachmentDeleted``."""
        self._require("delete_attachment")
        request = DeleteAttachment(token=self._token, tracing_id=tracing_id, attachment_id=attachment_id)
        self._send(request, PendingRequest(tracing_id, "deleteAttachment", attachment_id))

    def get_configuration(self, *, tracing_id: str) -> None:
        """Queue ``getConfiguration`` (§4.8): answered by ``ConfigurationReceived``."""
        self._require("get_configuration")
        request = GetConfiguration(token=self._token, tracing_id=tracing_id, deployment_id=self._deployment_id)
        self._send(request, PendingRequest(tracing_id, "getConfiguration"))

    # --- intent helpers ------------------------------------------------------------------------------

    def _require(self, intent: str) -> None:
        if not self._socket_open:
            raise GenesysProtocolError(f"{intent} needs an open connection (state {self._state.value})")
        if self._state not in _INTENT_STATES[intent]:
            raise GenesysProtocolError(f"{intent} is not allowed in state {self._state.value}")

    def _check_attributes(self, attributes: Mapping[str, str] | None) -> None:
        if not attributes:
            return
        size = custom_attributes_size(attributes)
        limit = self.max_custom_data_bytes
        if size > limit:
            raise CommandRejected(
                "attributes_too_large", f"custom attributes are {size} UTF-8 bytes; Genesys allows {limit} (error 4013)"
            )

    def _send(self, request: ClientAction, pending: PendingRequest) -> None:
        self._outbox.append(request.to_wire())
        self._pending.pop(pending.tracing_id, None)  # a reused id moves to the end
        self._pending[pending.tracing_id] = pending

    def _send_presence(self, kind: str, tracing_id: str | None, attributes: Mapping[str, str] | None) -> None:
        tid = tracing_id or self._new_id()
        channel = attributes_channel(attributes)
        event = PresenceEvent(presence=PresenceBody(type=kind))
        message = OutgoingMessage(type="Event", events=[event], channel=channel)
        self._send(
            OnMessage(token=self._token, tracing_id=tid, message=message), PendingRequest(tid, "onMessage", event=kind)
        )

    # --- incoming ------------------------------------------------------------------------------------

    def _dispatch(self, frame: ServerFrame) -> None:
        body = frame.body
        match body:
            case str():
                self._on_string(frame, body)
            case StructuredMessage():
                self._on_structured(frame, body)
            case SessionResponse():
                self._on_session_response(frame, body)
            case TooManyRequestsErrorMessage():
                request = self._attribute(frame.tracing_id)
                code = body.error_code or (frame.code if frame.code not in (None, 200) else 429)
                detail = body.error_message or body.message or ""
                self._events.append(RateLimited(_retry_after(body.retry_after), code, detail, request))
                self._after_failed(request)
            case ErrorBody():
                code = frame.code if frame.code not in (None, 200) else (body.error_code or 0)
                self._on_error(frame.tracing_id, code, body.error_message or body.message or "")
            case PresignedUrlResponse():
                request = self._take(frame.tracing_id) or self._take_attachment(body.attachment_id)
                refresh = (not body.headers and body.file_size is not None) or (
                    request is not None and request.action == "getAttachment"
                )
                self._events.append(UploadUrlIssued(body.attachment_id, body.url, body.headers, request, refresh))
            case UploadSuccessEvent():
                self._events.append(UploadSucceeded(body.attachment_id, body.download_url))
            case UploadFailureEvent():
                self._events.append(UploadFailed(body.attachment_id, body.error_code, body.error_message or ""))
            case GenerateUrlError():
                request = self._take(frame.tracing_id) or self._take_attachment(body.attachment_id)
                detail = body.error_message or body.message or ""
                self._events.append(UploadFailed(body.attachment_id, body.error_code, detail, request))
            case AttachmentDeletedResponse():
                request = self._take(frame.tracing_id) or self._take_attachment(body.attachment_id)
                self._events.append(AttachmentDeleted(body.attachment_id, request))
            case JwtResponse():
                request = self._take(frame.tracing_id) or self._take_oldest("getJwt")
                self._events.append(JwtIssued(body.jwt, body.exp, request))
            case GetConfigurationResponse():
                request = self._take(frame.tracing_id) or self._take_oldest("getConfiguration")
                self._events.append(
                    ConfigurationReceived(
                        max_custom_data_bytes=body.max_custom_data_bytes,
                        allowed_mime_types=_mime_types(body.allowed_media),
                        max_file_size_kb=_max_file_kb(body.allowed_media),
                        blocked_extensions=tuple(body.blocked_extensions),
                        message_routing_enabled=body.message_routing_enabled,
                        session_duration_s=body.session_duration_seconds,
                        request=request,
                    )
                )
            case ConnectionClosedEvent():
                self._events.append(ConnectionClosed(body.effective_reason))
                self._state = ProtocolState.CLOSED
            case SessionExpiredEvent():
                self._events.append(SessionExpired())
                self._state = ProtocolState.CLOSED
            case SessionClearedEvent():
                self._events.append(SessionCleared())
                self._state = ProtocolState.CLOSED
            case LogoutEvent():
                self._events.append(LoggedOut())
                self._state = ProtocolState.CLOSED
            case ResumeTokenResponse():
                # §4.10: schema-only, never requested by us; report it rather than guess its meaning.
                self._take(frame.tracing_id)
                self._events.append(
                    UnknownFrame(frame.frame_class, body.model_dump(by_alias=True), "unhandled", frame.code)
                )

    def _on_string(self, frame: ServerFrame, text: str) -> None:
        if frame.code is None:
            self._events.append(UnknownFrame(frame.frame_class, text, "unhandled", None))
        elif frame.code == 200:
            # A bare 200 answer, e.g. to Presence Clear (§4.3g): the request is done, nothing to report.
            self._take(frame.tracing_id)
        else:
            self._on_error(frame.tracing_id, frame.code, text)

    def _on_error(self, tracing_id: str | None, code: int, detail: str) -> None:
        """An error frame (§6), attributed by ``tracingId``, else to the oldest pending ``onMessage``."""
        request = self._attribute(tracing_id)
        if code in _RATE_LIMIT_CODES:
            # A 429/4029 that is not a TooManyRequestsErrorMessage: same meaning, default back-off (§8).
            self._events.append(RateLimited(DEFAULT_RETRY_AFTER_S, code, detail, request))
            self._after_failed(request)
            return
        self._events.append(ErrorReceived(code, detail, request))
        self._after_failed(request)
        if code == _CODE_EXPIRED:
            # §6: 4006 is terminal for the session, exactly like SessionExpiredEvent. Both events are
            # emitted so the failed request gets its own outcome before the session ends.
            self._events.append(SessionExpired())
            self._state = ProtocolState.CLOSED
        elif code == _CODE_READ_ONLY and self._state is ProtocolState.CONFIGURED:
            # §5.6/§11.3: 409 proves the session is read-only even if we missed the Disconnect.
            self._state = ProtocolState.READ_ONLY

    def _after_failed(self, request: PendingRequest | None) -> None:
        # A refused configureSession leaves the socket usable: configure again (after retryAfter on 429).
        if request is not None and request.action in _CONFIGURE_ACTIONS and self._state is ProtocolState.CONFIGURING:
            self._state = ProtocolState.CONNECTED

    def _on_session_response(self, frame: ServerFrame, body: SessionResponse) -> None:
        request = self._take(frame.tracing_id)
        if request is None:
            request = self._take_oldest("closeSession" if not body.connected else "configureSession")
        if not body.connected:
            # §4.7: the answer to closeSession. The session is over for this connection; configure
            # (start_new=True) may follow on the same socket.
            self._events.append(SessionClosed())
            self._state = ProtocolState.CLOSED
            return
        read_only = bool(body.read_only)
        configured = Configured(
            new_session=bool(body.new_session),
            read_only=read_only,
            max_custom_data_bytes=(
                body.max_custom_data_bytes
                if body.max_custom_data_bytes is not None and body.max_custom_data_bytes > 0
                else DEFAULT_MAX_CUSTOM_DATA_BYTES
            ),
            allowed_mime_types=_mime_types(body.allowed_media),
            max_file_size_kb=_max_file_kb(body.allowed_media),
            blocked_extensions=tuple(body.blocked_extensions),
            duration_s=body.duration_seconds,
            expires_at=_epoch_to_datetime(body.expiration_date),
            cleared_existing_session=bool(body.cleared_existing_session),
        )
        self._limits = configured
        self._state = ProtocolState.READ_ONLY if read_only else ProtocolState.CONFIGURED
        self._events.append(configured)

    def _on_structured(self, frame: ServerFrame, msg: StructuredMessage) -> None:
        tid = frame.tracing_id
        request = self._pending.get(tid) if tid is not None else None
        if request is None and tid is None and frame.frame_type == "response" and msg.direction == "Inbound":
            # An echo reply that lost its tracingId: a direct response to our oldest echo (§4.4) [INF].
            request = next((p for p in self._pending.values() if p.action == "echo"), None)
        if request is not None and request.action == "echo":
            del self._pending[request.tracing_id]
            self._events.append(
                EchoReplied(
                    tracing_id=tid,
                    duration_s=lenient_int(msg.metadata.get("durationSeconds")),
                    expires_at=_epoch_to_datetime(msg.metadata.get("expirationDate")),
                )
            )
            return
        inbound = msg.direction == "Inbound" or (msg.direction is None and request is not None)
        if msg.type == "Event":
            if inbound:
                # §5.3: echoes of our own Typing/Join/Clear (or from another connection). They only
                # acknowledge the request; KMP ignores them too.
                if request is not None:
                    del self._pending[request.tracing_id]
                return
            self._on_outbound_events(msg)
            return
        if inbound:
            if request is not None and request.action == "onMessage":
                del self._pending[request.tracing_id]
            else:
                request = None
            self._events.append(MessageEchoed(msg, tid, request))
            return
        if msg.type in ("Text", "Structured"):
            self._events.append(MessageReceived(msg))
        else:
            # Receipts and future types (§5.2): not for the conversation, but reported.
            self._events.append(UnknownFrame(frame.frame_class, msg.model_dump(by_alias=True), "unhandled", frame.code))

    def _on_outbound_events(self, msg: StructuredMessage) -> None:
        for event in msg.events:
            kind = event.get("eventType") if isinstance(event, dict) else None
            if kind == "Typing":
                typing = event.get("typing")
                duration = lenient_int(typing.get("duration")) if isinstance(typing, dict) else None
                self._events.append(
                    TypingReceived(msg, duration if duration and duration > 0 else DEFAULT_TYPING_DURATION_MS)
                )
                continue
            presence = event.get("presence") if kind == "Presence" else None
            if isinstance(presence, dict) and presence.get("type") == "Disconnect":
                read_only = _is_true(msg.metadata.get("readOnly"))
                self._events.append(ConversationDisconnected(msg, read_only))
                if read_only and self._state is ProtocolState.CONFIGURED:
                    self._state = ProtocolState.READ_ONLY
                continue
            self._events.append(UnknownFrame("StructuredMessage", msg.model_dump(by_alias=True), "unhandled"))

    # --- pending bookkeeping -------------------------------------------------------------------------

    def _take(self, tracing_id: str | None) -> PendingRequest | None:
        return self._pending.pop(tracing_id, None) if tracing_id is not None else None

    def _take_oldest(self, action: str) -> PendingRequest | None:
        for p in self._pending.values():
            if p.action == action:
                return self._pending.pop(p.tracing_id)
        return None

    def _take_attachment(self, attachment_id: str | None) -> PendingRequest | None:
        if attachment_id is None:
            return None
        for p in self._pending.values():
            if p.attachment_id == attachment_id:
                return self._pending.pop(p.tracing_id)
        return None

    def _attribute(self, tracing_id: str | None) -> PendingRequest | None:
        """The request an error answers: by ``tracingId``; without one, the configure being answered
        (while ``CONFIGURING``) or the oldest pending ``onMessage`` (Genesys does not always echo the
        id on errors [INF]). An unknown ``tracingId`` is attributed to nothing."""
        if tracing_id is not None:
            return self._pending.pop(tracing_id, None)
        if self._state is ProtocolState.CONFIGURING:
            for action in _CONFIGURE_ACTIONS:
                found = self._take_oldest(action)
                if found is not None:
                    return found
        return self._take_oldest("onMessage")
