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
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from bridge.contract import AttachmentRefresh, MessageSend, SessionEnd, SessionStart, TypingSend
from bridge.contract.content import AttachmentPart, ButtonResponse
from bridge.contract.events import EndReason, OutcomeReason, OutcomeStatus
from bridge.errors import CommandRejected, GenesysProtocolError, GenesysUnavailable, SessionGone, is_retryable
from bridge.genesys.events import (
    ConnectionClosed,
    ErrorReceived,
    MessageEchoed,
    RateLimited,
    SessionCleared,
    UploadFailed,
    UploadUrlIssued,
)
from bridge.genesys.frames import StructuredMessage
from bridge.ports import Envelope
from bridge.record import SettledOutcome
from bridge.session.attachments import AttachmentFailed, attachment_key, upload_attachments
from bridge.session.backfill import message_time
from bridge.session.inbound import END_KEY
from bridge.session.link import Answered
from bridge.session.outcomes import reason_for_code, rejected_reason, tracing_id_for
from bridge.session.session import Session, SessionStopping
from bridge.session.state import SessionTrigger

__all__ = ["MAX_RATE_LIMIT_RETRIES", "TYPING_ACK_WINDOW_S", "CommandRunner"]

log = structlog.get_logger(__name__)

#: Resends of one message after 429/4029 before it is ``failed``/``rate_limited``.
MAX_RATE_LIMIT_RETRIES = 5
#: Retryable local send failures (the socket went while writing) of one message before it is ``failed``: a
#: budget against a loop, not a retry decision (``is_retryable`` decides whether a failure is retried).
MAX_SEND_REFUSALS = 10
#: How long a typing command waits for Genesys' echo or 403 before it counts as delivered. Short: typing
#: echoes are not guaranteed (§14.6) and the session's next command waits behind it.
TYPING_ACK_WINDOW_S = 1.0


@dataclass(frozen=True, slots=True)
class _Result:
    status: OutcomeStatus
    reason: OutcomeReason
    detail: str = ""
    message: StructuredMessage | None = None  # our own echo, when delivered
    code: int | None = None
    attachment: AttachmentPart | None = None  # attachment.refresh: the fresh URL


def _delivered(message: StructuredMessage, detail: str = "") -> _Result:
    return _Result("delivered", "ok", detail, message=message)


class CommandRunner:
    """Handles and settles the commands of one session."""

    def __init__(self, core: Session) -> None:
        self._core = core
        self._attributes = dict(core.keeper.record.custom_attributes)  # sent with the first message
        self._typing_at: float | None = None
        self._typing_disabled = False

    async def run(self, envelope: Envelope) -> None:
        """Handle ``envelope`` and settle it: outcome published (confirmed), then acked."""
        core = self._core
        command = envelope.command
        age = self._inbox_age(envelope)
        try:
            if age > core.settings.inbox_max_age_s:
                result = _Result("rejected", "overflow", f"waited {age:.1f}s in the session inbox")
            else:
                match command:
                    case SessionStart():
                        result = await self._start(envelope, command)
                    case MessageSend():
                        result = await self._send(envelope, command)
                    case TypingSend():
                        result = await self._typing(command)
                    case SessionEnd():
                        result = await self._end(command)
                    case AttachmentRefresh():
                        result = await self._refresh(command)
        except SessionStopping:
            # The bridge drains while the session is not connected: it will not reconnect, so hand the
            # command back; the next process runs it (docs/sessions.md "Shutdown never ends a session").
            log.info("command_requeued_on_drain", command_id=command.command_id)
            await core.deps.book.requeue(envelope)
            return
        await self.settle(envelope, result)
        if result.reason == "read_only":  # 409: Genesys made the session read-only (§11.3)
            await core.finish("read_only", detail=result.detail)

    def _inbox_age(self, envelope: Envelope) -> float:
        """How long ``envelope`` waited while the session could have run it. Time before the session was
        last caught up (a paced recovery, a long reconnect) does not count: those commands were not late,
        the session was away. Not ready now: 0 (the command waits for the session like any other)."""
        core = self._core
        if not envelope.received_at or not core.gate.ready:
            return 0.0
        since = max(envelope.received_at, core.gate.opened_at or 0.0)
        return max(0.0, core.deps.clock.monotonic() - since)

    async def settle(self, envelope: Envelope, result: _Result) -> None:
        """Settle ``envelope`` with ``result``: kept in the record and saved, then published, then acked."""
        core = self._core
        command = envelope.command
        # Into the record before anything awaits (a seq block save may follow): every snapshot that no longer
        # journals this command's send already carries its outcome, so a redelivery is answered, not re-run.
        core.keeper.remember_outcome(
            SettledOutcome(
                command_id=command.command_id,
                command_type=command.type,
                status=result.status,
                reason=result.reason,
                genesys_message_id=result.message.id if result.message else None,
                genesys_code=result.code,
            )
        )
        if result.message is not None and result.message.id:  # our echo: never published back as inbound
            core.keeper.mark_seen(result.message.id, message_time(result.message))
        outcome = await core.events.outcome(
            envelope.command,
            result.status,
            result.reason,
            result.detail,
            genesys_message_id=result.message.id if result.message else None,
            genesys_code=result.code,
            attachment=result.attachment,
        )
        await core.keeper.save()
        await core.deps.book.settle(envelope, outcome, deployment_id=core.keeper.record.deployment_id)

    async def settle_unstarted(self, envelope: Envelope) -> None:
        """Answer a command the session never started because it is over (``rejected``/``session_ended``)."""
        await self.settle(envelope, self._ended("rejected"))

    def _ended(self, status: OutcomeStatus = "failed") -> _Result:
        core = self._core
        reason = core.end_reason or "failed"
        if reason == "rejected_by_genesys":
            return _Result(status, "genesys_error", core.end_detail or "configureSession was refused")
        return _Result(status, "session_ended", f"session ended: {reason}")

    async def _start(self, envelope: Envelope, command: SessionStart) -> _Result:
        if not await self._core.gate.wait():
            return self._ended()
        if command.initial_message:
            tracing_id = tracing_id_for(command.command_id, "initial")
            return await self._deliver(envelope, tracing_id, text=command.initial_message)
        return _Result("delivered", "ok", "session started")

    async def _send(self, envelope: Envelope, command: MessageSend) -> _Result:
        core = self._core
        attachment_ids: list[str] = []
        if command.attachments:
            if not await core.gate.wait():
                return self._ended()
            try:
                attachment_ids = await upload_attachments(
                    core.link,
                    core.deps.uploads,
                    command.attachments,
                    command_id=command.command_id,
                    timeout_s=core.settings.delivery_timeout_s,
                )
            except AttachmentFailed as exc:
                return _Result("failed", "attachment_failed", exc.detail)
            except (GenesysUnavailable, GenesysProtocolError) as exc:
                return _Result("failed", "attachment_failed", f"connection lost during upload: {exc}")
            except SessionGone:
                return self._ended()
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
    ) -> _Result:
        core, link = self._core, self._core.link
        attributes = {**self._attributes, **(custom_attributes or {})} or None
        keeper = core.keeper
        signature = core.pending.add(tracing_id, text or (button_response.text if button_response else None))
        # Journal the send before it leaves: after a crash the next process recognises it in the backfill.
        keeper.journal_send(tracing_id, signature)
        await keeper.save()
        result: _Result | None = None
        try:
            result = await self._attempt(envelope, tracing_id, text, button_response, attachment_ids, attributes)
            return result
        finally:
            link.forget(tracing_id)
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
    ) -> _Result:
        """Send until Genesys settles it (echo, error, timeout) or the session ends; resend after a resume."""
        core, link = self._core, self._core.link
        retries = refusals = 0
        while True:
            if not await core.gate.wait():
                return self._ended()
            echo = core.pending.take_echo(tracing_id)
            if echo is not None:  # a resume's backfill showed it reached Genesys: do not send it again
                return _delivered(echo, "confirmed from history after a reconnect")
            waited = await core.budget.acquire()
            if waited:
                core.metrics.rate_limit_waits.labels(kind="message").inc()
                core.metrics.rate_limit_wait_seconds.observe(waited)
            if not core.gate.ready:
                continue  # the socket went while we waited for budget
            future = link.expect(tracing_id)
            try:
                await link.send(
                    lambda p: p.send_message(
                        tracing_id=tracing_id,
                        text=text,
                        button_response=button_response,
                        attachment_ids=attachment_ids or (),
                        custom_attributes=attributes,
                    )
                )
            except CommandRejected as exc:
                link.forget(tracing_id)
                return _Result("rejected", rejected_reason(exc.reason), exc.detail)
            except (GenesysUnavailable, GenesysProtocolError) as exc:
                link.forget(tracing_id)
                if not is_retryable(exc):
                    # GenesysProtocolError: the protocol refused the send locally (not configured, read-only,
                    # closed; §4.1, §11.3). The gate closes before every such state the session recovers from
                    # (socket loss, a replayed read-only Disconnect), so here it is final for the command.
                    return _Result("failed", "genesys_error", f"could not send: {exc}")
                refusals += 1
                if refusals > MAX_SEND_REFUSALS:
                    return _Result("failed", "genesys_unavailable", f"could not send: {exc}")
                continue  # the reader notices the loss and closes the gate; we resend after the resume
            try:
                reply = await asyncio.wait_for(future, core.settings.delivery_timeout_s)
            except TimeoutError:
                # Given up: the request must not stay pending, or it would own the next untraced error.
                link.give_up(tracing_id)
                return _Result("failed", "timeout", f"no echo within {core.settings.delivery_timeout_s:g}s")
            except GenesysUnavailable:
                log.info("message_unanswered_at_socket_loss", tracing_id=tracing_id)
                continue  # after the resume: confirmed from history, or resent with the same tracingId
            except SessionGone:
                return self._ended()
            match reply:
                case MessageEchoed(message=message):
                    self._attributes = {}
                    return _delivered(message)
                case RateLimited(retry_after_s=after, code=code, detail=detail):
                    retries += 1
                    core.metrics.rate_limit_waits.labels(kind="genesys").inc()
                    if retries > MAX_RATE_LIMIT_RETRIES:
                        return _Result("failed", "rate_limited", detail, code=code)
                    notice = await core.events.outcome(
                        envelope.command, "will_retry", "rate_limited", f"retrying in {after:g}s", genesys_code=code
                    )
                    await core.deps.book.publish_only(envelope, notice, deployment_id=core.keeper.record.deployment_id)
                    await asyncio.sleep(after)
                case ErrorReceived(code=code, detail=detail):
                    return _Result("failed", reason_for_code(code), detail, code=code)
                case _:
                    return _Result("failed", "genesys_error", f"unexpected reply {type(reply).__name__}")

    async def _typing(self, command: TypingSend) -> _Result:
        core, link = self._core, self._core.link
        s = core.settings
        if core.features is not None and core.features.user_typing is False:
            # The deployment's config says so (§2.2): never sent, so never a 403 to read.
            return _Result("rejected", "typing_disabled", "the deployment does not show the guest's typing")
        if self._typing_disabled:
            return _Result("failed", "typing_disabled", "the deployment refused typing indicators (403)", code=403)
        now = core.deps.clock.monotonic()
        if self._typing_at is not None and now - self._typing_at < s.typing_interval_s:
            return _Result("delivered", "typing_coalesced", f"one typing indicator per {s.typing_interval_s:g}s")
        if not core.gate.ready:
            return _Result("delivered", "typing_coalesced", "not connected; typing dropped, not queued")
        if not core.budget.try_acquire():
            core.metrics.rate_limit_waits.labels(kind="typing_dropped").inc()
            return _Result("delivered", "typing_coalesced", "send budget spent; typing dropped, not queued")
        self._typing_at = now
        tracing_id = tracing_id_for(command.command_id)
        try:
            # Genesys echoes the guest's typing (§5.3) or answers 403: wait for either, but never block the
            # session for long: typing is not always acknowledged (§14.6).
            reply = await link.request(
                tracing_id,
                lambda p: p.send_typing(tracing_id=tracing_id),
                timeout_s=min(s.delivery_timeout_s, TYPING_ACK_WINDOW_S),
                silent_ok=True,
            )
        except TimeoutError:
            return _Result("delivered", "ok", "sent; Genesys did not acknowledge it")
        except SessionGone:
            return self._ended()
        except (GenesysUnavailable, GenesysProtocolError):
            return _Result("delivered", "typing_coalesced", "connection lost; typing dropped, not queued")
        match reply:
            case ErrorReceived(code=403, detail=detail):
                self._typing_disabled = True
                return _Result("failed", "typing_disabled", detail, code=403)
            case ErrorReceived(code=code, detail=detail):
                return _Result("failed", reason_for_code(code, typing=True), detail, code=code)
            case RateLimited(code=code):
                return _Result("delivered", "typing_coalesced", "rate limited by Genesys; dropped", code=code)
            case _:
                return _Result("delivered", "ok")

    async def _end(self, command: SessionEnd) -> _Result:
        core, link = self._core, self._core.link
        if not await core.gate.wait():
            return self._ended()
        core.ending = True
        await core.set_state(SessionTrigger.END_REQUESTED)
        reason: EndReason = "guest_left"
        if core.features is not None and core.features.clear is False:
            how = "the deployment does not allow Clear"
        else:
            await core.budget.acquire()  # Clear is an onMessage: it counts against Genesys' rate limit (§8)
            try:
                reply = await link.request(
                    END_KEY,
                    lambda p: p.clear_conversation(tracing_id=END_KEY),
                    timeout_s=core.settings.delivery_timeout_s,
                    silent_ok=True,
                )
            except SessionGone:
                return self._ended()  # the session ended otherwise meanwhile: not by this command
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
        return _Result("delivered", "ok", how)

    async def _refresh(self, command: AttachmentRefresh) -> _Result:
        """``getAttachment`` (§4.6): a fresh download URL for an attachment whose URL expired (4008)."""
        core, link = self._core, self._core.link
        if not await core.gate.wait():
            return self._ended()
        key = attachment_key(command.attachment_id)
        try:
            reply = await link.request(
                key,
                lambda p: p.refresh_attachment_url(
                    tracing_id=tracing_id_for(command.command_id), attachment_id=command.attachment_id
                ),
                timeout_s=core.settings.delivery_timeout_s,
            )
        except TimeoutError:
            return _Result("failed", "timeout", f"no answer within {core.settings.delivery_timeout_s:g}s")
        except SessionGone:
            return self._ended()
        except (GenesysUnavailable, GenesysProtocolError) as exc:
            return _Result("failed", "genesys_unavailable", f"could not ask Genesys: {exc}")
        match reply:
            case UploadUrlIssued(url=url):
                return _Result("delivered", "ok", attachment=AttachmentPart(id=command.attachment_id, url=url))
            case ErrorReceived(code=code, detail=detail):
                return _Result("failed", reason_for_code(code), detail, code=code)
            case UploadFailed(code=code, detail=detail):
                return _Result("failed", "genesys_error", detail, code=code)
            case _:
                return _Result("failed", "genesys_error", f"unexpected reply {type(reply).__name__}")
