"""Sans-I/O Guest API session protocol (protocol reference §3–§7).

Feed it what happened (``connection_made``, ``receive(frame)``, ``connection_lost``) and what the
caller wants (``configure``, ``send_message``, ``send_typing`` ...). Collect the frames to write with
``frames_to_send()`` and what happened with ``events_received()``. It does no I/O and knows no clock:
rate budgets and timeouts belong to the caller (the session actor).

Its states, pending requests and events live in :mod:`bridge.genesys.events`, the ``onMessage`` shapes in
:mod:`bridge.genesys.outgoing`, the receive path (frame → events and state) in
:mod:`bridge.genesys.receiving` (a base class of :class:`GuestProtocol`), the translation of frame bodies
into events in :mod:`bridge.genesys.translate` and the unanswered-request bookkeeping in
:mod:`bridge.genesys.pending`. Import those names from the module that defines them.

Rules it enforces:
- ``configure`` is the first frame on a connection; every other intent before ``Configured`` raises
  ``GenesysProtocolError`` naming the state (§4.1 "do not send any other action before SessionResponse").
- Text and custom attributes are size-checked before a frame is built (§4.3, §8): ``CommandRejected``
  with reason ``message_too_long`` / ``attributes_too_large``.
- Dispatch is on ``class``, never on ``type`` (§3.2). Unknown classes become ``UnknownFrame`` events.
- Error frames are attributed to the pending request with the same ``tracingId``. Real error frames often
  carry none (§6, §10): an untraced error goes to the pending request that can legally receive its error
  class, or to none (:data:`bridge.genesys.pending.ERROR_OWNERS`). 4006/4007 are about the session and
  are attributed to no request unless traced (``ErrorReceived.ends_session``).
- A typing notice is never pending (its echo is optional, §14.6); see :attr:`GuestProtocol.recent_typing`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from bridge.errors import CommandRejected, GenesysProtocolError
from bridge.genesys.actions import (
    ClientAction,
    CloseSession,
    ConfigureAuthenticatedSession,
    ConfigureSession,
    DeleteAttachment,
    Echo,
    GetAttachment,
    GetConfiguration,
    GetJwt,
    OnAttachment,
    OnMessage,
    OutgoingMessage,
    PresenceBody,
    PresenceEvent,
    TypingEvent,
)
from bridge.genesys.events import (
    CONFIGURE_ACTIONS,
    Configured,
    PendingRequest,
    ProtocolEvent,
    ProtocolState,
    UnknownFrame,
)
from bridge.genesys.frames import UnparsedFrame, parse_server_frame
from bridge.genesys.outgoing import (
    DEFAULT_MAX_CUSTOM_DATA_BYTES,
    MAX_TEXT_BYTES,
    attributes_channel,
    build_outgoing_message,
    custom_attributes_size,
)
from bridge.genesys.pending import PendingRequests
from bridge.genesys.receiving import ServerFrameHandler
from genesys_bridge_client.contract.content import ButtonResponse

__all__ = ["GuestProtocol"]


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


class GuestProtocol(ServerFrameHandler):
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
        self._pending = PendingRequests()
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
        """Requests sent on this connection and not answered (nor forgotten) yet, oldest first.

        Never holds typing notices: see :attr:`recent_typing`.
        """
        return tuple(self._pending)

    @property
    def recent_typing(self) -> tuple[str, ...]:
        """``tracingId``s of the last few typing notices written on this connection and not answered.

        An error naming one of them is reported with a ``Typing`` request (a 403 when the deployment has
        typing off, §4.3f); an echo of one settles it. They are not :attr:`pending`: nothing should wait
        for them, because Genesys may never answer (§14.6).
        """
        return self._pending.recent_typing

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

        Typing notices are never among them (they are never pending, §14.6) and not worth resending.
        Frames not yet collected by :meth:`frames_to_send` are dropped (their requests are returned).
        ``CLOSED`` stays ``CLOSED``; anything else becomes ``DISCONNECTED``.
        """
        unanswered = list(self._pending)
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

    def forget(self, tracing_id: str) -> PendingRequest | None:
        """Drop the pending request (or recent typing notice) with ``tracing_id``; return it, or ``None``.

        Call it when the caller stops waiting for an answer (its own timeout, a cancelled command), so
        :attr:`pending` stays accurate: a late answer with this ``tracingId`` is then attributed to
        nothing, and an untraced error can no longer be pinned on the abandoned request.
        """
        return self._pending.forget(tracing_id)

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

    def configure(
        self,
        *,
        start_new: bool = False,
        tracing_id: str | None = None,
        jwt: str | None = None,
        journey_context: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue ``configureSession`` (§4.1): resume (``start_new=False``) or a fresh session; with ``jwt``,
        ``configureAuthenticatedSession`` (§4.2) carrying it as ``data.code``. Allowed again on a configured
        connection: that is how an authenticated session takes a refreshed JWT after a 401 (§4.2 step 3)."""
        self._require("configure")
        tid = tracing_id or self._new_id()
        common = {
            "token": self._token,
            "tracing_id": tid,
            "deployment_id": self._deployment_id,
            "start_new": start_new,
            "journey_context": dict(journey_context) if journey_context is not None else None,
        }
        request = (
            ConfigureSession(**common) if jwt is None else ConfigureAuthenticatedSession(**common, data={"code": jwt})
        )
        # A new configure supersedes one left unanswered (e.g. by an untraced 4006, which no request
        # owns): only one is answered at a time, and a stale one would take the next untraced error.
        for old in [p for p in self._pending if p.action in CONFIGURE_ACTIONS]:
            self._pending.remove(old)
        self._send(request, PendingRequest(tid, request.action))
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
        # What the message carried decides which untraced errors it may own (§6: 4011, 4013, 4010).
        pending = PendingRequest(
            tracing_id,
            "onMessage",
            has_text=bool(text),
            has_attributes=bool(custom_attributes),
            attachment_ids=tuple(attachment_ids),
        )
        self._send(OnMessage(token=self._token, tracing_id=tracing_id, message=message), pending)

    def send_typing(self, *, tracing_id: str | None = None) -> None:
        """Queue a guest typing indicator (§4.3f). Throttling (≤1 per 5 s) is the caller's job.

        The notice is never pending: Genesys may or may not echo it (§14.6), so it would otherwise wait
        for ever and soak up untraced errors meant for real messages. It joins :attr:`recent_typing`
        instead, so an error that names it (or an untraced 403 "Turn on the Feature Toggle") still comes
        back as an ``ErrorReceived`` with a ``Typing`` request.
        """
        self._require("send_typing")
        tid = tracing_id or self._new_id()
        message = OutgoingMessage(type="Event", events=[TypingEvent()])
        self._outbox.append(OnMessage(token=self._token, tracing_id=tid, message=message).to_wire())
        self._pending.note_typing(tid)

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
        self._pending.add(pending)  # a reused id moves to the end

    def _send_presence(self, kind: str, tracing_id: str | None, attributes: Mapping[str, str] | None) -> None:
        tid = tracing_id or self._new_id()
        channel = attributes_channel(attributes)
        event = PresenceEvent(presence=PresenceBody(type=kind))
        message = OutgoingMessage(type="Event", events=[event], channel=channel)
        pending = PendingRequest(tid, "onMessage", event=kind, has_attributes=bool(attributes))
        self._send(OnMessage(token=self._token, tracing_id=tid, message=message), pending)
