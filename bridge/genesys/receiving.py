"""The receive path of the Guest API protocol: one parsed server frame → events and state (§4–§7).

:class:`ServerFrameHandler` is the half of :class:`bridge.genesys.protocol.GuestProtocol` that handles
what the server sends: it finds the pending request a frame answers (by ``tracingId``, else the documented
fallbacks), applies the frame's state transition (``CLOSED`` on session end, ``READ_ONLY`` on a 409 or a
read-only Disconnect, back to ``CONNECTED`` after a refused configure) and appends the events, built by
:mod:`bridge.genesys.translate`. It is a base class, not a separate object: the protocol owns the state
it reads and writes (the attributes declared below), and sends nothing from here.

Rules (§6, §10): error frames are attributed to the pending request with the same ``tracingId``; an
untraced one to the pending request that can legally receive its error class, or to none (the table is
:data:`bridge.genesys.pending.ERROR_OWNERS`; real error frames often carry no ``tracingId``). Dispatch is
on ``class``, never on ``type`` (§3.2).
"""

from __future__ import annotations

from typing import Final

from bridge.genesys.events import (
    CONFIGURE_ACTIONS,
    AgentMessage,
    AttachmentDeleted,
    Configured,
    ConnectionClosed,
    ConversationDisconnected,
    ErrorReceived,
    JwtIssued,
    LoggedOut,
    MessageEchoed,
    PendingRequest,
    ProtocolEvent,
    ProtocolState,
    RateLimited,
    SessionCleared,
    SessionClosed,
    SessionExpired,
    UnknownFrame,
    UploadFailed,
    UploadSucceeded,
)
from bridge.genesys.frames import (
    AttachmentDeletedResponse,
    ConnectionClosedEvent,
    ErrorBody,
    GenerateUrlError,
    GetConfigurationResponse,
    JwtResponse,
    LogoutEvent,
    PresignedUrlResponse,
    ResumeTokenResponse,
    ServerFrame,
    SessionClearedEvent,
    SessionExpiredEvent,
    SessionResponse,
    StructuredMessage,
    TooManyRequestsErrorMessage,
    UploadFailureEvent,
    UploadSuccessEvent,
)
from bridge.genesys.pending import RATE_LIMIT_CODES, ErrorClass, PendingRequests
from bridge.genesys.translate import (
    DEFAULT_RETRY_AFTER_S,
    configuration_received,
    configured,
    echo_replied,
    outbound_events,
    rate_limited,
    upload_url_issued,
)

__all__ = ["ServerFrameHandler"]

# Error codes with a protocol meaning beyond "this request failed" (§6).
_CODE_READ_ONLY: Final = 409
_CODE_EXPIRED: Final = 4006
_CODE_RATE_LIMITED: Final = 429


class ServerFrameHandler:
    """Server frames → protocol events and state. Subclassed by ``GuestProtocol``, which sets the
    attributes below in its ``__init__`` and calls :meth:`_dispatch` for each parsed frame."""

    _state: ProtocolState
    _limits: Configured | None
    _pending: PendingRequests
    _events: list[ProtocolEvent]

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
                request = self._attribute(frame.tracing_id, _CODE_RATE_LIMITED, "")
                self._events.append(rate_limited(frame, body, request))
                self._after_failed(request)
            case ErrorBody():
                code = frame.code if frame.code not in (None, 200) else (body.error_code or 0)
                named = (body.model_extra or {}).get("attachmentId")
                attachment_id = named if isinstance(named, str) else None
                self._on_error(frame.tracing_id, code, body.error_message or body.message or "", attachment_id)
            case PresignedUrlResponse():
                request = self._take(frame.tracing_id) or self._take_attachment(body.attachment_id)
                self._events.append(upload_url_issued(body, request))
            case UploadSuccessEvent():
                self._events.append(UploadSucceeded(body.attachment_id, body.download_url))
            case UploadFailureEvent():
                self._events.append(UploadFailed(body.attachment_id, body.error_code, body.error_message or ""))
            case GenerateUrlError():
                # §4.6: the answer to onAttachment; untraced, the upload it names (else the oldest upload).
                request = self._take(frame.tracing_id) or self._pending.take_owner(
                    ErrorClass.UPLOAD_REFUSED, configuring=False, attachment_id=body.attachment_id
                )
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
                self._events.append(configuration_received(body, request))
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

    def _on_error(self, tracing_id: str | None, code: int, detail: str, attachment_id: str | None = None) -> None:
        """An error frame (§6), attributed by ``tracingId``, else by its error class (§10)."""
        request = self._attribute(tracing_id, code, detail, attachment_id)
        if code in RATE_LIMIT_CODES:
            # A 429/4029 that is not a TooManyRequestsErrorMessage: same meaning, default back-off (§8).
            self._events.append(RateLimited(DEFAULT_RETRY_AFTER_S, code, detail, request))
            self._after_failed(request)
            return
        self._events.append(ErrorReceived(code, detail, request))
        self._after_failed(request)
        if code == _CODE_EXPIRED:
            # §6: 4006 is terminal for the session, exactly like SessionExpiredEvent. Both events are
            # emitted so a traced request gets its own outcome before the session ends (an untraced
            # 4006 has no request: it is about the session, see ErrorReceived.ends_session).
            self._events.append(SessionExpired())
            self._state = ProtocolState.CLOSED
        elif code == _CODE_READ_ONLY and self._state is ProtocolState.CONFIGURED:
            # §5.6/§11.3: 409 proves the session is read-only even if we missed the Disconnect.
            self._state = ProtocolState.READ_ONLY

    def _after_failed(self, request: PendingRequest | None) -> None:
        # A refused configureSession leaves the socket usable: configure again (after retryAfter on 429).
        if request is not None and request.action in CONFIGURE_ACTIONS and self._state is ProtocolState.CONFIGURING:
            self._state = ProtocolState.CONNECTED

    def _on_session_response(self, frame: ServerFrame, body: SessionResponse) -> None:
        request = self._take(frame.tracing_id)
        if request is None:
            request = self._take_oldest(*(("closeSession",) if not body.connected else CONFIGURE_ACTIONS))
        if not body.connected:
            # §4.7: the answer to closeSession. The session is over for this connection; configure
            # (start_new=True) may follow on the same socket.
            self._events.append(SessionClosed())
            self._state = ProtocolState.CLOSED
            return
        event = configured(body)
        self._limits = event
        self._state = ProtocolState.READ_ONLY if event.read_only else ProtocolState.CONFIGURED
        self._events.append(event)

    def _on_structured(self, frame: ServerFrame, msg: StructuredMessage) -> None:
        tid = frame.tracing_id
        request = self._pending.get(tid) if tid is not None else None
        if request is None and tid is None and frame.frame_type == "response" and msg.direction == "Inbound":
            # An echo reply that lost its tracingId: a direct response to our oldest echo (§4.4) [INF].
            request = next((p for p in self._pending if p.action == "echo"), None)
        if request is not None and request.action == "echo":
            self._pending.remove(request)
            self._events.append(echo_replied(tid, msg))
            return
        inbound = msg.direction == "Inbound" or (msg.direction is None and request is not None)
        if msg.type == "Event":
            if inbound:
                # §5.3: echoes of our own Typing/Join/Clear (or from another connection). They only
                # acknowledge the request; KMP ignores them too. A typing echo settles a recent notice.
                if request is not None:
                    self._pending.remove(request)
                elif tid is not None:
                    self._pending.forget(tid)
                return
            self._on_outbound_events(msg)
            return
        if inbound:
            if request is not None and request.action == "onMessage":
                self._pending.remove(request)
            else:
                request = None
            self._events.append(MessageEchoed(msg, tid, request))
            return
        if msg.type in ("Text", "Structured"):
            self._events.append(AgentMessage(msg))
        else:
            # Receipts and future types (§5.2): not for the conversation, but reported.
            self._events.append(UnknownFrame(frame.frame_class, msg.model_dump(by_alias=True), "unhandled", frame.code))

    def _on_outbound_events(self, msg: StructuredMessage) -> None:
        for event in outbound_events(msg):
            self._events.append(event)
            # §5.3: a Disconnect whose metadata says readOnly makes a configured session read-only.
            if (
                isinstance(event, ConversationDisconnected)
                and event.read_only
                and self._state is ProtocolState.CONFIGURED
            ):
                self._state = ProtocolState.READ_ONLY

    # --- pending bookkeeping -------------------------------------------------------------------------

    def _take(self, tracing_id: str | None) -> PendingRequest | None:
        return self._pending.take(tracing_id)

    def _take_oldest(self, *actions: str) -> PendingRequest | None:
        return self._pending.take_oldest(*actions)

    def _take_attachment(self, attachment_id: str | None) -> PendingRequest | None:
        return self._pending.take_attachment(attachment_id)

    def _attribute(
        self, tracing_id: str | None, code: int, detail: str, attachment_id: str | None = None
    ) -> PendingRequest | None:
        """The request an error answers, removed (see :meth:`PendingRequests.attribute`)."""
        return self._pending.attribute(
            tracing_id,
            configuring=self._state is ProtocolState.CONFIGURING,
            code=code,
            detail=detail,
            attachment_id=attachment_id,
        )
