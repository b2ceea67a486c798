"""What Genesys tells a session: live protocol events and the history backfill after a resume.

- Agent/bot messages become ``message.received`` events, each Genesys message id once (dedupe by
  ``body.id``, §9); an id is marked seen only after the broker confirmed its event (docs/durability.md).
- Replies to our requests (echoes, JWT, presigned URLs, errors, 429s) resolve the link's waiters.
- Disconnect, expiry, clear, 4007 and ``ConnectionClosedEvent`` end the session with a distinct reason; a
  Disconnect older than the last message seen is a replay and is ignored. A read-only Disconnect ends the
  session only after one last history check (Genesys promises no ordering, §10); a Disconnect in Send mode
  and an agent's Join are published as ``presence.received`` and the session goes on.
- During a resume's catch-up (:meth:`InboundDispatcher.hold` .. the end of :meth:`~InboundDispatcher.catch_up`)
  live messages, typing and Disconnects are held (:mod:`bridge.session.held`) and released after the
  backfill, so ``seq`` follows Genesys' order and the backfill stops at an id known *before* the resume.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import structlog

from bridge.contract.events import MessageReceived, PresenceReceived, SessionResumed, TypingReceived
from bridge.errors import GenesysRateLimited, GenesysRejected, GenesysUnavailable
from bridge.genesys.events import (
    AgentMessage,
    AgentTyping,
    ConnectionClosed,
    ConversationDisconnected,
    EchoReplied,
    ErrorReceived,
    JwtIssued,
    LoggedOut,
    MessageEchoed,
    PendingRequest,
    PresenceJoined,
    ProtocolEvent,
    RateLimited,
    SessionCleared,
    SessionExpired,
    UnknownFrame,
    UploadFailed,
    UploadSucceeded,
    UploadUrlIssued,
)
from bridge.genesys.frames import StructuredMessage
from bridge.genesys.normalize import normalize_message, sender_of
from bridge.genesys.urls import resolve_origin
from bridge.session.attachments import attachment_key
from bridge.session.backfill import EntityKind, classify, fetch_missed, message_time
from bridge.session.held import HeldEvents
from bridge.session.reorder import REORDER_MAX_HELD, ReorderBuffer
from bridge.session.session import Session

__all__ = ["END_KEY", "JWT_KEY", "InboundDispatcher"]

log = structlog.get_logger(__name__)

#: Waiter keys (and tracingIds) of requests whose success reply may carry no tracingId: ``getJwt`` and
#: the ``Clear`` of ``session.end``. One of each is in flight per session at most.
JWT_KEY = "getjwt"
END_KEY = "clear"

_BACKFILL_RATE_LIMIT_RETRIES = 3


class InboundDispatcher:
    """Turns protocol events into session events and resolved waiters. One per session."""

    def __init__(self, core: Session) -> None:
        self._core = core
        self._held: HeldEvents | None = None
        self._known: frozenset[str] | None = None
        self._tasks: asyncio.TaskGroup | None = None
        window = core.settings.reorder_window_s
        #: Live agent messages held to be published in ``channel.time`` order (§10); None: as they arrive.
        self._reorder = ReorderBuffer(window) if window > 0 else None
        if self._reorder is not None:
            core.before_end = self._publish_held_back  # what the agent wrote comes before any session.ended
        #: A read-only Disconnect arrived: the final history check runs and the session ends after it.
        self.disconnecting = False

    async def _release_reordered(self, due: float) -> None:
        clock = self._core.deps.clock
        await asyncio.sleep(max(0.0, due - clock.monotonic()))
        await self._publish_reordered(everything=False)

    async def _publish_held_back(self) -> None:
        await self._publish_reordered(everything=True)

    async def _publish_reordered(self, *, everything: bool) -> None:
        if self._reorder is None:
            return
        due = self._reorder.drain() if everything else self._reorder.due(self._core.deps.clock.monotonic())
        for message in due:
            await self.publish_message(message, backfilled=False)

    def serve_in(self, tasks: asyncio.TaskGroup) -> None:
        """Work that needs replies from the socket (the final history check) runs in ``tasks``, beside the pump."""
        self._tasks = tasks

    def hold(self) -> None:
        """A resume begins (call before the socket is pumped): hold live messages, typing and Disconnects
        until :meth:`catch_up` releases them, and snapshot the ids known now, before the resume."""
        self.disconnecting = False  # a final check cut short by a lost socket is done again by the resume
        self._held = HeldEvents()
        self._known = frozenset(self._core.keeper.seen.snapshot())
        if self._reorder is not None:
            self._reorder.drain()  # not seen yet, so the backfill publishes them, in order

    def discard_held(self) -> None:
        """The catch-up did not complete (socket lost, session over): drop what is held. Nothing is lost:
        Genesys has it in history, and it was not marked seen, so the next backfill publishes it."""
        self._held = None
        self._known = None

    async def on_event(self, event: ProtocolEvent) -> None:
        core, link = self._core, self._core.link
        match event:
            case MessageEchoed(message=message, tracing_id=tracing_id):
                if not link.resolve(tracing_id, event) and classify(message) is EntityKind.INBOUND_MESSAGE:
                    await self._live(event)  # sent from another connection
            case AgentMessage() | AgentTyping() | ConversationDisconnected() | PresenceJoined():
                core.note_agent_activity()
                await self._live(event)
            case EchoReplied(tracing_id=tracing_id):
                link.resolve(tracing_id, event)
            case JwtIssued():
                link.resolve(JWT_KEY, event)
            case UploadUrlIssued(attachment_id=attachment_id) | UploadSucceeded(attachment_id=attachment_id):
                link.resolve(attachment_key(attachment_id), event)
            case UploadFailed(attachment_id=attachment_id):
                link.resolve(attachment_key(attachment_id) if attachment_id else None, event)
            case SessionExpired():
                await core.finish("expired")
            case SessionCleared():
                await self._gone("cleared", event)
            case ConnectionClosed(reason=reason):
                await self._gone("closed_by_genesys", event, detail=reason)
            case LoggedOut():
                await self._gone("closed_by_genesys", event, detail="logged out")
            case RateLimited(code=code, request=request):
                core.metrics.genesys_errors.labels(code=str(code)).inc()
                if not self._answer(request, event):
                    log.warning("genesys_rate_limited_unattributed", code=code, retry_after_s=event.retry_after_s)
            case ErrorReceived(code=4007, detail=detail):
                # §6: Genesys no longer knows the session; its own transport treats this as final. The
                # command that drew it (if any) is settled by the end (failed, session_ended).
                core.metrics.genesys_errors.labels(code="4007").inc()
                await core.finish("conversation_lost", detail=f"4007: {detail}")
            case ErrorReceived(code=code, detail=detail, request=request):
                core.metrics.genesys_errors.labels(code=str(code)).inc()
                # 4006 fails the request here; the protocol's SessionExpired that follows ends the session.
                if not self._answer(request, event):
                    log.warning("genesys_error_unattributed", code=code, detail=detail)
            case UnknownFrame(frame_class=frame_class):
                log.info("genesys_frame_ignored", frame_class=frame_class)
            case _:
                log.debug("genesys_event_ignored", event=type(event).__name__)

    def _answer(self, request: PendingRequest | None, event: ProtocolEvent) -> bool:
        """Hand an error or 429 to whoever waits for ``request``: by tracingId, or by attachment id."""
        link = self._core.link
        resolved = link.resolve(request.tracing_id if request else None, event)
        if request is not None and request.attachment_id:
            resolved = link.resolve(attachment_key(request.attachment_id), event) or resolved
        return resolved

    async def _live(self, event: ProtocolEvent) -> None:
        if self._held is not None:
            self._held.add(event)
            return
        await self._publish_live(event)

    async def _publish_live(self, event: ProtocolEvent) -> None:
        match event:
            case AgentMessage(message=message) if self._reorder is not None and self._tasks is not None:
                due = self._reorder.add(message, self._core.deps.clock.monotonic())
                if len(self._reorder) > REORDER_MAX_HELD:
                    await self._publish_reordered(everything=True)  # the bound wins over the order
                else:
                    self._tasks.create_task(self._release_reordered(due), name="reorder-release")
            case MessageEchoed(message=message) | AgentMessage(message=message):
                await self.publish_message(message, backfilled=False)
            case AgentTyping(message=message, duration_ms=duration):
                if (message.direction or "").lower() != "inbound":
                    events = self._core.events
                    stamp = await events.stamp()
                    await events.publish(TypingReceived(**stamp, sender=sender_of(message), duration_ms=duration))
            case ConversationDisconnected(message=message, read_only=read_only):
                await self._publish_reordered(everything=True)  # what the agent wrote came before
                await self._disconnected(message, read_only)
            case PresenceJoined(message=message):
                events = self._core.events
                stamp = await events.stamp()
                await events.publish(PresenceReceived(**stamp, kind="join", sender=sender_of(message)))
            case _:  # pragma: no cover - only the kinds above are held
                log.debug("genesys_event_ignored", event=type(event).__name__)

    async def _release(self) -> None:
        """Publish what was held, oldest first (duplicates of the backfill are dropped by id), then stop
        holding. Raises ``GenesysUnavailable`` when the hold overflowed: reconnect and backfill again."""
        held = self._held
        while held is not None and not held.overflowed and (event := held.pop()) is not None:
            await self._publish_live(event)
            if self._core.gate.over:
                break
        self.discard_held()
        if held is not None and held.overflowed:
            log.warning("live_events_overflowed_during_backfill")
            raise GenesysUnavailable("too many live events during the backfill; resuming again")

    async def _gone(
        self, reason: Literal["cleared", "closed_by_genesys"], event: ProtocolEvent, **kw: str | None
    ) -> None:
        """Clear or server close: the answer to our own ``session.end``, or the end of the session."""
        if self._core.ending:
            self._core.link.resolve(END_KEY, event)
            return
        await self._core.finish(reason, detail=kw.get("detail"))

    async def _disconnected(self, message: StructuredMessage, read_only: bool) -> None:
        keeper = self._core.keeper
        if keeper.is_seen(message.id) or keeper.is_older_than_checkpoint(message_time(message)):
            log.info("replayed_disconnect_ignored", genesys_message_id=message.id, read_only=read_only)
            if read_only:
                # The protocol took the replay at its word and turned read-only; a fresh configure on a new
                # socket tells the truth (SessionResponse.readOnly), so reconnect rather than refuse sends.
                # The gate closes first: no send may reach the read-only protocol meanwhile.
                self._core.gate.close()
                await self._core.link.close()
            return
        if not read_only:
            await self._agent_left(message)
            return
        # ReadOnly mode: the session is over, but Genesys promises no ordering (§10): the agent's last
        # message may still be on its way, or never come on this socket. One last look at the history
        # publishes it before session.ended; that takes a round trip the pump must serve, so it runs beside it.
        self._core.gate.close()
        self.disconnecting = True
        if self._tasks is None:  # pragma: no cover - every caller runs inside serve()
            await self._end_disconnected()
        else:
            self._tasks.create_task(self._end_disconnected(), name="final-history-check")

    async def _agent_left(self, message: StructuredMessage) -> None:
        """Send mode (§5.3): the agent left, but the session stays writable; the guest's next message starts
        a new conversation. Say so, and keep the session."""
        events = self._core.events
        stamp = await events.stamp()
        await events.publish(PresenceReceived(**stamp, kind="disconnect", read_only=False, sender=sender_of(message)))
        if message.id:
            await self._core.keeper.checkpoint(message.id, message_time(message))

    async def _end_disconnected(self) -> None:
        await self.final_history_check()
        await self._core.finish("agent_disconnected", detail="read_only")

    async def final_history_check(self) -> None:
        """Before a read-only end: publish what the agent wrote that this session has not seen (§10: a
        Disconnect may overtake the last message). Best effort: a failed check is logged, never fatal."""
        core = self._core
        try:
            missed = await self._fetch(frozenset(core.keeper.seen.snapshot()))
        except (GenesysUnavailable, TimeoutError) as exc:
            log.warning("final_history_check_failed", error=str(exc))
            missed = []
        for message in missed:
            if classify(message) is EntityKind.OUTBOUND_MESSAGE and not core.keeper.is_seen(message.id):
                await self.publish_message(message, backfilled=True)

    async def publish_message(self, message: StructuredMessage, *, backfilled: bool) -> None:
        """Publish one message once; mark it seen only after the broker confirmed the event."""
        core = self._core
        if core.keeper.is_seen(message.id):
            core.metrics.duplicates_dropped.inc()
            return
        normalized = normalize_message(message)
        event = MessageReceived(
            **await core.events.stamp(),
            genesys_message_id=message.id or "",
            direction=normalized.direction,
            sender=normalized.sender,
            text=normalized.text,
            parts=normalized.parts,
            genesys_time=normalized.genesys_time,
            backfilled=backfilled,
            raw=message.model_dump(mode="json", by_alias=True, exclude_none=True),
        )
        await core.events.publish(event)
        if backfilled:
            core.metrics.backfilled.inc()
            if normalized.direction == "outbound":
                core.note_agent_activity()  # the agent talked while we were away
        if message.id:
            await core.keeper.checkpoint(message.id, normalized.genesys_time)

    async def catch_up(self, cause: Literal["reconnect", "restart"]) -> None:
        """After a resume: ``getJwt``, page history to a known id, publish ``session.resumed`` then each missed
        message once (§4.1, §9). A Disconnect among them (and newer than the checkpoint) ends the session.
        Then the live events held since :meth:`hold` are released.

        Raises:
            GenesysUnavailable: the socket or REST went away, or too many live events arrived meanwhile; the
                caller reconnects and tries again (held events are dropped: history has them).
        """
        core = self._core
        if self._known is None:
            self._known = frozenset(core.keeper.seen.snapshot())
        missed = await self._fetch(self._known)
        publish: list[StructuredMessage] = []
        agent_left: set[str | None] = set()  # Send-mode Disconnects, published as presence in their place
        disconnect: StructuredMessage | None = None
        for message in missed:
            if core.keeper.is_seen(message.id):
                core.metrics.duplicates_dropped.inc()
                continue
            match classify(message):
                case EntityKind.OUTBOUND_MESSAGE:
                    publish.append(message)
                case EntityKind.INBOUND_MESSAGE:
                    if not core.pending.match(message):
                        publish.append(message)  # the guest's own, from another connection
                case EntityKind.DISCONNECT if not core.keeper.is_older_than_checkpoint(message_time(message)):
                    if message.metadata.get("readOnly") == "true":
                        disconnect = message
                    else:
                        publish.append(message)
                        agent_left.add(message.id)
                case EntityKind.DISCONNECT | EntityKind.IGNORED:
                    pass
        missed_count = len(publish) - len(agent_left)
        log.info("session_backfilled", cause=cause, missed=missed_count)
        if cause == "restart" and core.restored_sends:
            # The previous process's unanswered sends now live in core.pending (matched or not); a redelivered
            # command finds its match there. Stop journalling them, so a stale one cannot outlive this process.
            core.keeper.forget_sends(core.restored_sends)
        resumed = SessionResumed(**await core.events.stamp(), cause=cause, missed_messages=missed_count)
        await core.events.publish(resumed)
        for message in publish:
            if message.id in agent_left:
                await self._agent_left(message)
            else:
                await self.publish_message(message, backfilled=True)
        if disconnect is not None:
            await self._disconnected(disconnect, disconnect.metadata.get("readOnly") == "true")
        if core.gate.over:
            self.discard_held()
            return
        await self._release()

    async def _fetch(self, known: frozenset[str]) -> list[StructuredMessage]:
        core = self._core
        s = core.settings
        for attempt in range(_BACKFILL_RATE_LIMIT_RETRIES + 1):
            jwt = await self._jwt()
            try:
                backfill = await fetch_missed(
                    core.deps.history,
                    rest_base=core.endpoints.rest_base,
                    jwt=jwt,
                    origin=resolve_origin(s, core.keeper.record.deployment_id, core.keeper.record.origin),
                    # The ids known before the resume, not the live set: nothing published meanwhile may
                    # stop the paging early and hide an older missed message.
                    is_known=known.__contains__,
                    has_known=bool(known),
                    page_size=s.history_page_size,
                    max_pages=s.history_max_pages,
                )
            except GenesysRateLimited as exc:  # 10 history GETs/min/session (§8)
                core.metrics.rate_limit_waits.labels(kind="history").inc()
                if attempt == _BACKFILL_RATE_LIMIT_RETRIES:
                    raise GenesysUnavailable(f"history rate limited: {exc}") from exc
                await asyncio.sleep(exc.retry_after_s)
                continue
            except GenesysRejected as exc:
                # Not retryable (e.g. 403): report the gap loudly rather than loop; live messages still flow.
                log.error("backfill_failed", code=exc.code, detail=exc.detail)
                return []
            return backfill.missed
        return []  # pragma: no cover - the loop returns or raises

    async def _jwt(self) -> str:
        link = self._core.link
        try:
            # JwtResponse may lack the tracingId; errors carry it.
            reply = await link.request(
                JWT_KEY,
                lambda p: p.request_jwt(tracing_id=JWT_KEY),
                timeout_s=self._core.settings.delivery_timeout_s,
            )
        except TimeoutError:
            raise GenesysUnavailable("no JwtResponse in time") from None
        if not isinstance(reply, JwtIssued):
            raise GenesysUnavailable(f"getJwt answered {type(reply).__name__}")
        return reply.jwt
