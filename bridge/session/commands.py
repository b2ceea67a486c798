"""Runs one session's commands, strictly one at a time, and settles each with its outcome.

Rules of the road (protocol reference §8) applied here:
- ``message.send`` waits for the shared send budget, is size-checked by the protocol before sending
  (``CommandRejected`` → ``rejected``), and is ``delivered`` only on Genesys' Inbound echo with the same
  tracingId (§4.3). An error frame → ``failed`` with the Genesys code; no echo within
  ``delivery_timeout_s`` → ``failed``/``timeout``. 429/4029 → a ``will_retry`` outcome (not settling),
  a wait of ``retryAfter`` and a resend with the *same* tracingId; the settled outcome follows.
- A socket loss before the echo: after the reconnect and backfill, the send counts as delivered if the
  history shows it (matched by text, :class:`~bridge.session.session.PendingSends`); otherwise it is resent.
- ``typing.send`` is coalesced to one per ``typing_interval_s`` and dropped (``delivered`` with reason
  ``typing_coalesced``) when the budget is spent: typing is never queued. A 403 on typing → ``failed``/
  ``typing_disabled``, and later typing commands fail at once without being sent.
- ``session.end`` sends Presence ``Clear`` (§4.3 g) and ends ``guest_ended`` once Genesys cleared it.
  Where the deployment does not allow Clear (its config says so, or a 403), or Clear is not confirmed, the
  socket is closed and the token forgotten: ``session.ended guest_left``, the conversation stays with the agent.
- ``attachment.refresh`` asks ``getAttachment`` for a fresh download URL (§4.6; expired URLs are error 4008).

Idempotency across restarts: each settled outcome is kept in the record's bounded ``recent_outcomes`` and
saved *before* the ack, in the same snapshot that drops the send from ``pending_sends``; the registry
answers a redelivery from it. Inbox age (``inbox_max_age_s``) counts only time the session was caught up.
A command waiting for a reconnect when the bridge drains is requeued, its journalled send kept.

**Attachments.** Guest attachments in ``message.send`` (protocol reference §4.6, §11.10).

For each file: get the bytes (decode ``content_base64`` or download ``url``, size-limited), check name,
type and size against the session's ``allowedMedia`` / ``blockedExtensions`` (§4.6, §5.1), ask for a
presigned URL (``onAttachment``), PUT the bytes with *every* presign header, then wait for
``UploadSuccessEvent`` before the message may reference the id (otherwise Genesys answers 4010).

Every failure raises :class:`AttachmentFailed` with a clear detail; the actor turns it into a ``failed``
outcome with reason ``attachment_failed``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import uuid
from collections.abc import Mapping, Sequence
from functools import partial

import structlog

from bridge.contract.outcomes import SettledOutcome
from bridge.errors import (
    BridgeError,
    CommandRejected,
    GenesysAuthFailed,
    GenesysProtocolError,
    GenesysRateLimited,
    GenesysUnavailable,
    SessionGone,
    is_retryable,
)
from bridge.genesys.events import (
    Configured,
    ConnectionClosed,
    ErrorReceived,
    MessageEchoed,
    RateLimited,
    SessionCleared,
    UploadFailed,
    UploadSucceeded,
    UploadUrlIssued,
)
from bridge.genesys.frames import StructuredMessage
from bridge.genesys.protocol import GuestProtocol
from bridge.ports import Envelope
from bridge.session.auth import MAX_AUTH_RETRIES
from bridge.session.inbound import message_time
from bridge.session.link import Answered, GenesysLink
from bridge.session.outcomes import (
    END_KEY,
    REAUTH_KEY,
    attachment_key,
    reason_for_code,
    rejected_reason,
    tracing_id_for,
)
from bridge.session.ports import UploadClient
from bridge.session.session import Session, SessionStopping
from bridge.session.state import SessionTrigger
from genesys_bridge_client.contract import (
    AttachmentRefresh,
    Command,
    MessageSend,
    SessionEnd,
    SessionLogout,
    SessionStart,
    TypingSend,
)
from genesys_bridge_client.contract.content import AttachmentPart, AttachmentUpload, ButtonResponse
from genesys_bridge_client.contract.events import EndReason, OutcomeStatus

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "MAX_RATE_LIMIT_RETRIES",
    "TYPING_ACK_WINDOW_S",
    "AttachmentFailed",
    "CommandRunner",
    "check_file",
    "upload_attachments",
]

log = structlog.get_logger(__name__)

#: Resends of one message after 429/4029 before it is ``failed``/``rate_limited``.
MAX_RATE_LIMIT_RETRIES = 5
#: Socket losses (while writing, or before the echo) of one message before it is ``failed``: a budget against
#: a loop, not a retry decision (``is_retryable`` decides whether a failure is retried).
MAX_SEND_REFUSALS = 10
#: How long a typing command waits for Genesys' echo or 403 before it counts as delivered. Short: typing
#: echoes are not guaranteed (§14.6) and the session's next command waits behind it.
TYPING_ACK_WINDOW_S = 1.0


#: Every handler below returns what its command came to, built here.
_result = SettledOutcome.of


class CommandRunner:
    """Handles and settles the commands of one session."""

    __slots__ = ("_attributes", "_core", "_typing_at", "_typing_disabled")

    def __init__(self, core: Session) -> None:
        self._core = core
        self._attributes = dict(core.keeper.record.custom_attributes)  # sent with the first message
        self._typing_at: float | None = None
        self._typing_disabled = False

    async def run(self, envelope: Envelope) -> None:
        """Handle ``envelope`` and settle it: outcome published (confirmed), then acked."""
        core = self._core
        command = envelope.command
        if envelope.trace is not None:
            core.keeper.note_trace(envelope.trace)  # the session's later events carry the newest command's trace
        attributes = {"genesys_bridge.command_id": command.command_id, "genesys_bridge.session_id": core.session_id}
        with core.deps.tracer.command(command.type, parent=envelope.trace, attributes=attributes) as span:
            if core.credentials.socket_due() and core.gate.ready:
                await self._reauthenticate()
            try:
                result = await self._handle(envelope)
            except SessionStopping:
                # The bridge drains while the session is not connected: it will not reconnect, so hand the
                # command back; the next process runs it (docs/sessions.md "Shutdown never ends a session").
                log.info("command_requeued_on_drain", command_id=command.command_id)
                span.set_attribute("genesys_bridge.outcome", "requeued")
                await core.deps.book.requeue(envelope)
                return
            span.set_attribute("genesys_bridge.outcome", f"{result.status}/{result.reason}")
            await self.settle(envelope, result)
        if result.reason == "read_only":  # 409: Genesys made the session read-only (§11.3)
            await core.finish("read_only", detail=result.detail)

    async def _reauthenticate(self) -> None:
        """Configure the open socket again with a renewed JWT before its own expires (§4.2), so no request of
        this command is answered 401. Commands run one at a time, so nothing of this session is sent while
        the socket is configuring. Any failure closes the socket: the reconnect configures afresh."""
        core, link = self._core, self._core.link
        try:
            jwt = await core.credentials.for_configure()
            context = core.keeper.record.journey_context
            reply = await link.request(
                "reauthenticate",
                REAUTH_KEY,
                lambda p: p.configure(tracing_id=REAUTH_KEY, jwt=jwt, journey_context=context),
                timeout_s=core.settings.ws_connect_timeout_s,
            )
        except GenesysAuthFailed as exc:
            await core.end_refused("auth_failed", exc)
            return
        except SessionGone:
            return
        except (TimeoutError, GenesysUnavailable, GenesysRateLimited, GenesysProtocolError) as exc:
            log.info("session_reauthentication_failed", error=str(exc) or type(exc).__name__)
            reply = None
        if isinstance(reply, Configured):
            core.credentials.accepted()
            return
        if isinstance(reply, ErrorReceived) and reply.code == 401:
            core.credentials.refused()
        core.gate.close()
        await link.close()

    async def _handle(self, envelope: Envelope) -> SettledOutcome:
        command = envelope.command
        age = self._inbox_age(envelope)
        if age > self._core.settings.inbox_max_age_s:
            return _result(command, "rejected", "overflow", f"waited {age:.1f}s in the session inbox")
        match command:
            case SessionStart():
                return await self._start(envelope, command)
            case MessageSend():
                return await self._send(envelope, command)
            case TypingSend():
                return await self._typing(command)
            case SessionEnd():
                return await self._end(command)
            case AttachmentRefresh():
                return await self._refresh(command)
            case SessionLogout():
                return await self._logout(command)

    def _inbox_age(self, envelope: Envelope) -> float:
        """How long ``envelope`` waited while the session could have run it. Time before the session was
        last caught up (a paced recovery, a long reconnect) does not count: those commands were not late,
        the session was away. Not ready now: 0 (the command waits for the session like any other)."""
        core = self._core
        if not envelope.received_at or not core.gate.ready:
            return 0.0
        since = max(envelope.received_at, core.gate.opened_at or 0.0)
        return max(0.0, core.deps.clock.monotonic() - since)

    async def settle(self, envelope: Envelope, result: SettledOutcome) -> None:
        """Settle ``envelope`` with ``result``: kept in the record and saved, then published, then acked."""
        core = self._core
        # Into the record before anything awaits (a seq block save may follow): every snapshot that no longer
        # journals this command's send already carries its outcome, so a redelivery is answered, not re-run.
        core.keeper.remember_outcome(result)
        outcome = await core.events.outcome(result, envelope.command)
        await core.keeper.save()
        record = core.keeper.record
        await core.deps.book.settle(envelope, outcome, deployment_id=record.deployment_id, route=record.route)

    def _delivered(self, command: Command, echo: StructuredMessage, detail: str = "") -> SettledOutcome:
        """``delivered``: Genesys echoed the message. The echo is marked seen at once, so it is never published
        back as inbound; this runs in the same loop step as the send's journal entry is dropped and the result
        remembered (no await between), so no saved snapshot has one without the others."""
        if echo.id:
            self._core.keeper.mark_seen(echo.id, message_time(echo))
        return _result(command, "delivered", "ok", detail, genesys_message_id=echo.id)

    async def settle_unstarted(self, envelope: Envelope) -> None:
        """Answer a command the session never started because it is over (``rejected``/``session_ended``)."""
        await self.settle(envelope, self._ended(envelope.command, "rejected"))

    def _ended(self, command: Command, status: OutcomeStatus = "failed") -> SettledOutcome:
        core = self._core
        reason = core.end_reason or "failed"
        if reason == "rejected_by_genesys":
            return SettledOutcome.of(
                command,
                status,
                "genesys_error",
                core.end_detail or "configureSession was refused",
                genesys_code=core.end_code,
            )
        if reason == "auth_failed":
            detail = core.end_detail or "the session could not be authenticated"
            return SettledOutcome.of(command, status, "auth_failed", detail, genesys_code=core.end_code or None)
        return _result(command, status, "session_ended", f"session ended: {reason}")

    async def _start(self, envelope: Envelope, command: SessionStart) -> SettledOutcome:
        if not await self._core.gate.wait():
            return self._ended(command)
        started = "authenticated session started" if self._core.credentials.authenticated else "session started"
        if command.autostart:
            started = f"{started}; {await self._autostart(command)}"
        if command.initial_message:
            tracing_id = tracing_id_for(command.command_id, "initial")
            result = await self._deliver(envelope, tracing_id, text=command.initial_message)
            return result.model_copy(update={"detail": f"{started}; {result.detail}".rstrip("; ")})
        return _result(command, "delivered", "ok", started)

    async def _autostart(self, command: SessionStart) -> str:
        """Send Presence ``Join`` (§4.3g) so the flow starts before the customer writes; what happened, for the
        outcome's detail. Only on a new session of a deployment whose config allows autostart (Genesys' SDK
        sends it on the same condition)."""
        core = self._core
        if core.new_session is False:
            return "autostart skipped: the session is not new (it was resumed)"
        if core.features is None or core.features.autostart is None:
            return "autostart skipped: the deployment's config could not be read, so it is not known to allow it"
        if core.features.autostart is False:
            return "autostart skipped: the deployment has autostart off"
        await core.budget.acquire()  # Join is an onMessage: it counts against Genesys' rate limit (§8)
        key = tracing_id_for(command.command_id, "join")
        attributes = core.keeper.record.custom_attributes or None
        try:
            reply = await core.link.request(
                "send join",
                key,
                lambda p: p.send_join(tracing_id=key, custom_attributes=attributes),
                timeout_s=core.settings.delivery_timeout_s,
                silent_ok=True,
            )
        except (TimeoutError, GenesysUnavailable, GenesysProtocolError) as exc:
            return f"autostart not confirmed ({type(exc).__name__})"
        if isinstance(reply, ErrorReceived | RateLimited):
            return f"autostart refused ({reply.code}: {reply.detail})"
        return "autostart: Join sent"

    async def _logout(self, command: SessionLogout) -> SettledOutcome:
        """Revoke the session's tokens over REST (§4.2 step 4): every device of the customer is logged out
        (Genesys sends each a LogoutEvent), and the session ends ``logged_out``."""
        core = self._core
        if not core.credentials.authenticated:
            return _result(command, "rejected", "not_authenticated", "the session is anonymous: nothing to log out")
        if core.gate.over:
            return self._ended(command)
        core.logout = command  # the LogoutEvent this draws ends the session by this command
        try:
            await core.credentials.revoke()
        except GenesysAuthFailed as exc:
            core.logout = None
            return _result(
                command, "failed", "auth_failed", f"the revoke was refused: {exc.detail}", genesys_code=exc.code
            )
        except (GenesysUnavailable, GenesysRateLimited, GenesysProtocolError) as exc:
            core.logout = None
            return _result(command, "failed", "genesys_unavailable", f"could not revoke: {exc}")
        await core.finish("logged_out", detail="session.logout", cause=command)
        return _result(command, "delivered", "ok", "logged out: the tokens are revoked")

    async def _send(self, envelope: Envelope, command: MessageSend) -> SettledOutcome:
        core = self._core
        attachment_ids: list[str] = []
        if command.attachments:
            if not await core.gate.wait():
                return self._ended(command)
            try:
                attachment_ids = await upload_attachments(
                    core.link,
                    core.deps.uploads,
                    command.attachments,
                    command_id=command.command_id,
                    timeout_s=core.settings.delivery_timeout_s,
                )
            except AttachmentFailed as exc:
                return _result(command, "failed", "attachment_failed", exc.detail)
            except (GenesysUnavailable, GenesysProtocolError) as exc:
                return SettledOutcome.of(
                    command, "failed", "attachment_failed", f"connection lost during upload: {exc}"
                )
            except SessionGone:
                return self._ended(command)
        return await self._deliver(
            envelope,
            tracing_id_for(command.command_id),
            text=command.text,
            button_response=command.button_response,
            attachment_ids=attachment_ids,
            custom_attributes=command.custom_attributes,
        )

    async def _deliver(
        self,
        envelope: Envelope,
        tracing_id: str,
        *,
        text: str | None,
        button_response: ButtonResponse | None = None,
        attachment_ids: list[str] | None = None,
        custom_attributes: dict[str, str] | None = None,
    ) -> SettledOutcome:
        core = self._core
        attributes = {**self._attributes, **(custom_attributes or {})} or None
        keeper = core.keeper
        signature = core.pending.add(tracing_id, text or (button_response.text if button_response else None))
        # Journal the send before it leaves: after a crash the next process recognises it in the backfill.
        keeper.journal_send(tracing_id, signature)
        await keeper.save()
        result: SettledOutcome | None = None
        try:
            result = await self._attempt(envelope, tracing_id, text, button_response, attachment_ids, attributes)
            return result
        finally:
            core.pending.discard(tracing_id)
            if result is not None:
                # Settled here: stop journalling the send (saved with the outcome, in the same snapshot). A
                # requeue (drain, cancel) keeps it: the next process must recognise it in its backfill.
                keeper.forget_sends([tracing_id])

    async def _attempt(
        self,
        envelope: Envelope,
        tracing_id: str,
        text: str | None,
        button_response: ButtonResponse | None,
        attachment_ids: list[str] | None,
        attributes: dict[str, str] | None,
    ) -> SettledOutcome:
        """Send until Genesys settles it (echo, error, timeout) or the session ends; resend after a resume."""
        core, link = self._core, self._core.link
        command = envelope.command
        retries = refusals = unauthorized = 0
        while True:
            if not await core.gate.wait():
                return self._ended(command)
            echo = core.pending.take_echo(tracing_id)
            if echo is not None:  # a resume's backfill showed it reached Genesys: do not send it again
                return self._delivered(command, echo, "confirmed from history after a reconnect")
            waited = await core.budget.acquire()
            if waited:
                core.metrics.rate_limit.delayed("message", waited)
            if not core.gate.ready:
                continue  # the socket went while we waited for budget
            sent_at = core.deps.clock.monotonic()
            try:
                reply = await link.request(
                    "send message",
                    tracing_id,
                    lambda p: p.send_message(
                        tracing_id=tracing_id,
                        text=text,
                        button_response=button_response,
                        attachment_ids=attachment_ids or (),
                        custom_attributes=attributes,
                    ),
                    timeout_s=core.settings.delivery_timeout_s,
                )
            except CommandRejected as exc:
                return _result(command, "rejected", rejected_reason(exc.reason), exc.detail)
            except TimeoutError:
                return SettledOutcome.of(
                    command, "failed", "timeout", f"no echo within {core.settings.delivery_timeout_s:g}s"
                )
            except SessionGone:
                return self._ended(command)
            except (GenesysUnavailable, GenesysProtocolError) as exc:
                if not is_retryable(exc):
                    # GenesysProtocolError: the protocol refused the send locally (not configured, read-only,
                    # closed; §4.1, §11.3). The gate closes before every such state the session recovers from
                    # (socket loss, a replayed read-only Disconnect), so here it is final for the command.
                    return _result(command, "failed", "genesys_error", f"could not send: {exc}")
                # The socket went while writing or before the echo: the reader notices the loss and closes the
                # gate; after the resume the send is confirmed from history or resent with the same tracingId.
                refusals += 1
                if refusals > MAX_SEND_REFUSALS:
                    return _result(command, "failed", "genesys_unavailable", f"could not send: {exc}")
                log.info("message_unanswered_at_socket_loss", tracing_id=tracing_id)
                continue
            match reply:
                case MessageEchoed(message=message):
                    core.metrics.genesys_echo_latency.observe(core.deps.clock.monotonic() - sent_at)
                    self._attributes = {}
                    return self._delivered(command, message)
                case RateLimited(retry_after_s=after, code=code, detail=detail):
                    retries += 1
                    if retries > MAX_RATE_LIMIT_RETRIES:
                        core.metrics.rate_limit.dropped("message")
                        return _result(command, "failed", "rate_limited", detail, genesys_code=code)
                    retrying = SettledOutcome.of(
                        command, "will_retry", "rate_limited", f"retrying in {after:g}s", genesys_code=code
                    )
                    notice = await core.events.outcome(retrying, command)
                    record = core.keeper.record
                    await core.deps.book.publish_only(
                        envelope, notice, deployment_id=record.deployment_id, route=record.route
                    )
                    core.metrics.rate_limit.delayed("genesys", after)
                    await asyncio.sleep(after)
                case ErrorReceived(code=401, detail=detail) if core.credentials.authenticated:
                    # §4.2: the socket's JWT expired. The message was refused, not delivered: reconnect with a
                    # renewed JWT and send it again once the session is back, a few times at most.
                    unauthorized += 1
                    if unauthorized > MAX_AUTH_RETRIES:
                        return _result(command, "failed", "auth_failed", detail, genesys_code=401)
                    log.info("message_unauthorized_reauthenticating", tracing_id=tracing_id)
                    core.credentials.refused()
                    core.gate.close()
                    await link.close()
                case ErrorReceived(code=code, detail=detail):
                    return _result(command, "failed", reason_for_code(code), detail, genesys_code=code)
                case _:
                    return SettledOutcome.of(
                        command, "failed", "genesys_error", f"unexpected reply {type(reply).__name__}"
                    )

    async def _typing(self, command: TypingSend) -> SettledOutcome:
        core, link = self._core, self._core.link
        s = core.settings
        if core.features is not None and core.features.user_typing is False:
            # The deployment's config says so (§2.2): never sent, so never a 403 to read.
            return SettledOutcome.of(
                command, "rejected", "typing_disabled", "the deployment does not show the guest's typing"
            )
        if self._typing_disabled:
            return SettledOutcome.of(
                command, "failed", "typing_disabled", "the deployment refused typing indicators (403)", genesys_code=403
            )
        now = core.deps.clock.monotonic()
        if self._typing_at is not None and now - self._typing_at < s.typing_interval_s:
            return SettledOutcome.of(
                command, "delivered", "typing_coalesced", f"one typing indicator per {s.typing_interval_s:g}s"
            )
        if not core.gate.ready:
            return SettledOutcome.of(
                command, "delivered", "typing_coalesced", "not connected; typing dropped, not queued"
            )
        if not core.budget.try_acquire():
            core.metrics.rate_limit.dropped("typing")
            return SettledOutcome.of(
                command, "delivered", "typing_coalesced", "send budget spent; typing dropped, not queued"
            )
        self._typing_at = now
        tracing_id = tracing_id_for(command.command_id)
        try:
            # Genesys echoes the guest's typing (§5.3) or answers 403: wait for either, but never block the
            # session for long: typing is not always acknowledged (§14.6).
            reply = await link.request(
                "send typing",
                tracing_id,
                lambda p: p.send_typing(tracing_id=tracing_id),
                timeout_s=min(s.delivery_timeout_s, TYPING_ACK_WINDOW_S),
                silent_ok=True,
            )
        except TimeoutError:
            return _result(command, "delivered", "ok", "sent; Genesys did not acknowledge it")
        except SessionGone:
            return self._ended(command)
        except (GenesysUnavailable, GenesysProtocolError):
            return SettledOutcome.of(
                command, "delivered", "typing_coalesced", "connection lost; typing dropped, not queued"
            )
        match reply:
            case ErrorReceived(code=403, detail=detail):
                self._typing_disabled = True
                return _result(command, "failed", "typing_disabled", detail, genesys_code=403)
            case ErrorReceived(code=code, detail=detail):
                return SettledOutcome.of(
                    command, "failed", reason_for_code(code, typing=True), detail, genesys_code=code
                )
            case RateLimited(code=code):
                return SettledOutcome.of(
                    command, "delivered", "typing_coalesced", "rate limited by Genesys; dropped", genesys_code=code
                )
            case _:
                return _result(command, "delivered", "ok")

    async def _end(self, command: SessionEnd) -> SettledOutcome:
        core, link = self._core, self._core.link
        if not await core.gate.wait():
            return self._ended(command)
        core.ending = True
        await core.set_state(SessionTrigger.END_REQUESTED)
        reason: EndReason = "guest_left"
        if core.features is not None and core.features.clear is False:
            how = "the deployment does not allow Clear"
        else:
            await core.budget.acquire()  # Clear is an onMessage: it counts against Genesys' rate limit (§8)
            try:
                reply = await link.request(
                    "clear conversation",
                    END_KEY,
                    lambda p: p.clear_conversation(tracing_id=END_KEY),
                    timeout_s=core.settings.delivery_timeout_s,
                    silent_ok=True,
                )
            except SessionGone:
                return self._ended(command)  # the session ended otherwise meanwhile: not by this command
            except (TimeoutError, GenesysUnavailable, GenesysProtocolError) as exc:
                how = f"Clear not confirmed ({type(exc).__name__})"
            else:
                match reply:
                    case Answered() | SessionCleared() | ConnectionClosed():
                        reason, how = "guest_ended", "cleared"
                    case ErrorReceived(code=code) | RateLimited(code=code):
                        how = f"Clear refused ({code})"
                    case _:
                        how = f"Clear not confirmed ({type(reply).__name__})"
        if reason == "guest_left":
            # Without Clear the guest can only walk away (§4.3g, §4.9): the conversation stays with the agent.
            how += "; socket closed and token forgotten, the conversation stays open for the agent"
        await core.finish(reason, trigger=SessionTrigger.END_DONE, detail=how, cause=command)
        return _result(command, "delivered", "ok", how)

    async def _refresh(self, command: AttachmentRefresh) -> SettledOutcome:
        """``getAttachment`` (§4.6): a fresh download URL for an attachment whose URL expired (4008)."""
        core, link = self._core, self._core.link
        if not await core.gate.wait():
            return self._ended(command)
        key = attachment_key(command.attachment_id)
        try:
            reply = await link.request(
                "refresh attachment url",
                key,
                lambda p: p.refresh_attachment_url(
                    tracing_id=tracing_id_for(command.command_id), attachment_id=command.attachment_id
                ),
                timeout_s=core.settings.delivery_timeout_s,
            )
        except TimeoutError:
            return SettledOutcome.of(
                command, "failed", "timeout", f"no answer within {core.settings.delivery_timeout_s:g}s"
            )
        except SessionGone:
            return self._ended(command)
        except (GenesysUnavailable, GenesysProtocolError) as exc:
            return _result(command, "failed", "genesys_unavailable", f"could not ask Genesys: {exc}")
        match reply:
            case UploadUrlIssued(url=url):
                return SettledOutcome.of(
                    command, "delivered", "ok", attachment=AttachmentPart(id=command.attachment_id, url=url)
                )
            case ErrorReceived(code=code, detail=detail):
                return _result(command, "failed", reason_for_code(code), detail, genesys_code=code)
            case UploadFailed(code=code, detail=detail):
                return _result(command, "failed", "genesys_error", detail, genesys_code=code)
            case _:
                return _result(command, "failed", "genesys_error", f"unexpected reply {type(reply).__name__}")


#: 10 MB: Genesys' documented maximum when the deployment does not say (§8).
DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024


class AttachmentFailed(BridgeError):
    """An attachment could not be prepared or uploaded; ``detail`` says which and why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def max_file_bytes(limits: Configured | None) -> int:
    if limits is not None and limits.max_file_size_kb:
        return limits.max_file_size_kb * 1024
    return DEFAULT_MAX_FILE_BYTES


def check_file(upload: AttachmentUpload, size: int, limits: Configured | None) -> None:
    """Raise :class:`AttachmentFailed` when the deployment would refuse this file (§4.6 limits)."""
    name = upload.file_name
    if "." not in name.strip(".") or name.endswith("."):
        raise AttachmentFailed(f"{name}: a file extension is required")
    extension = "." + name.rsplit(".", 1)[1].lower()
    if limits is not None:
        blocked = {b.lower() if b.startswith(".") else "." + b.lower() for b in limits.blocked_extensions}
        if extension in blocked:
            raise AttachmentFailed(f"{name}: extension {extension} is blocked by the deployment")
        allowed = limits.allowed_mime_types
        if allowed and not any(fnmatch.fnmatch(upload.mime_type.lower(), pattern.lower()) for pattern in allowed):
            raise AttachmentFailed(f"{name}: type {upload.mime_type} is not allowed ({', '.join(allowed)})")
    limit = max_file_bytes(limits)
    if size > limit:
        raise AttachmentFailed(f"{name}: {size} bytes is over the {limit} byte limit")
    if size == 0:
        raise AttachmentFailed(f"{name}: the file is empty")


async def _content(upload: AttachmentUpload, uploads: UploadClient, limit: int) -> bytes:
    if upload.content_base64 is not None:
        try:
            return base64.b64decode(upload.content_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise AttachmentFailed(f"{upload.file_name}: content_base64 is not valid base64") from exc
    assert upload.url is not None  # the contract requires exactly one source
    try:
        return await uploads.fetch_bytes(upload.url, max_bytes=limit)
    except BridgeError as exc:
        raise AttachmentFailed(f"{upload.file_name}: download failed: {exc}") from exc


async def _put(
    uploads: UploadClient, upload: AttachmentUpload, url: str, headers: Mapping[str, str], content: bytes
) -> None:
    try:
        await uploads.upload(url, headers, content, upload.mime_type)
    except BridgeError as exc:
        raise AttachmentFailed(f"{upload.file_name}: upload PUT failed: {exc}") from exc


async def upload_attachments(
    link: GenesysLink,
    uploads: UploadClient,
    files: Sequence[AttachmentUpload],
    *,
    command_id: str,
    timeout_s: float,
) -> list[str]:
    """Upload ``files`` in order and return their Genesys attachment ids, ready to reference (§4.3 e).

    Attachment ids are derived from ``command_id`` so a redelivered command reuses them.
    Raises:
        AttachmentFailed: any step failed (the message must not be sent).
        GenesysUnavailable, SessionGone: the socket or session went away (the actor handles these).
    """
    ids: list[str] = []
    limits = link.limits
    for index, upload in enumerate(files):
        content = await _content(upload, uploads, max_file_bytes(limits))
        check_file(upload, len(content), limits)
        attachment_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"genesys-bridge:{command_id}:{index}"))
        key = attachment_key(attachment_id)
        try:
            issued = await link.request(
                "request upload",
                key,
                partial(
                    GuestProtocol.request_upload,
                    tracing_id=attachment_id,
                    attachment_id=attachment_id,
                    file_name=upload.file_name,
                    file_type=upload.mime_type,
                    file_size=len(content),
                ),
                timeout_s=timeout_s,
            )
        except TimeoutError:
            raise AttachmentFailed(f"{upload.file_name}: no presigned URL within {timeout_s:g}s") from None
        match issued:
            case UploadUrlIssued(url=url, headers=headers):
                pass
            case UploadFailed(code=code, detail=detail) | ErrorReceived(code=code, detail=detail):
                raise AttachmentFailed(f"{upload.file_name}: Genesys refused the upload ({code}): {detail}")
            case _:
                raise AttachmentFailed(f"{upload.file_name}: unexpected reply {type(issued).__name__}")

        try:
            # The PUT goes over HTTP; Genesys answers it over the socket (UploadSuccessEvent, §4.6).
            result = await link.request(
                "upload", key, None, trigger=partial(_put, uploads, upload, url, headers, content), timeout_s=timeout_s
            )
        except TimeoutError:
            raise AttachmentFailed(f"{upload.file_name}: no UploadSuccessEvent within {timeout_s:g}s") from None
        match result:
            case UploadSucceeded():
                ids.append(attachment_id)
            case UploadFailed(code=code, detail=detail):
                raise AttachmentFailed(f"{upload.file_name}: Genesys rejected the file ({code}): {detail}")
            case _:
                raise AttachmentFailed(f"{upload.file_name}: unexpected reply {type(result).__name__}")
    return ids
