"""What Genesys tells a session: live protocol events and the history backfill after a resume.

- Agent/bot messages become ``message.received`` events, each Genesys message id once (dedupe by
  ``body.id``, §9); an id is marked seen only after the broker confirmed its event (docs/durability.md).
- Replies to our requests (echoes, JWT, presigned URLs, errors, 429s) resolve the link's waiters.
- Disconnect, expiry, clear, 4007 and ``ConnectionClosedEvent`` end the session with a distinct reason; a
  Disconnect older than the last message seen is a replay and is ignored. A read-only Disconnect ends the
  session only after one last history check (Genesys promises no ordering, §10); a Disconnect in Send mode
  and an agent's Join are published as ``presence.received`` and the session goes on.
- During a resume's catch-up (:meth:`InboundDispatcher.hold` .. the end of :meth:`~InboundDispatcher.catch_up`)
  live messages, typing and Disconnects are held (:class:`HeldEvents`) and released after the
  backfill, so ``seq`` follows Genesys' order and the backfill stops at an id known *before* the resume.

**Backfill.** History backfill after a reconnect or restart (protocol reference §4.1 "Resume", §9).

Pages are fetched newest first until a message id the session already published shows up (or the pages
run out, or ``max_pages`` is reached). What was missed is returned oldest first, sorted by
``channel.time`` (§10: the only ordering key; entities without a time keep their page position).
Deduplication is by Genesys message id (``body.id``), never by tracingId (§9).

**Held events.** Live events held back while a resumed session catches up on history (protocol reference §4.1, §9).

After a resume, ``getJwt`` and the history pages run *beside* the socket pump, so agent messages keep
arriving live while the backfill is still being fetched. Publishing them at once would publish (and mark
seen) a message *newer* than the ones the backfill is about to publish: ``seq`` order would break, and a
backfill stopping at the first known id would stop at that live message and never publish the older
missed ones. So live messages, typing and Disconnects are held here and released, in arrival order, once
the backfill is published (deduplicated by Genesys id on release).

Bounded: a session holds at most ``limit`` events. When a message or Disconnect does not fit, the hold
is marked ``overflowed`` and the caller must give up this catch-up and reconnect: everything Genesys
sent is in its history, so the next backfill publishes it. A typing indicator that does not fit is just
dropped (ephemeral, §5.3).

**Reordering.** Agent messages put back into Genesys' order: ``channel.time`` within a short window (§10).

Genesys promises no ordering of the frames it pushes: two agent messages written a moment apart can
arrive swapped. With a window of ``w`` seconds, each live message is held for ``w`` after it arrived; when
one's hold runs out, it is released together with every held message Genesys stamped no later than it,
oldest ``channel.time`` first. A message that arrives more than ``w`` late is still published, just out of
order: the window bounds the latency cost (at most ``w`` per message), not the disorder Genesys may cause.

Pure: the caller passes the clock reading in and publishes what comes out.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import structlog

from bridge.errors import GenesysRateLimited, GenesysRejected, GenesysUnavailable
from bridge.genesys.events import (
    AgentMessage,
    AgentTyping,
    Configured,
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
from bridge.genesys.normalize import normalize_message, parse_genesys_time, sender_of
from bridge.genesys.urls import resolve_origin
from bridge.recent_ids import RecentIds
from bridge.session.outcomes import END_KEY, JWT_KEY, REAUTH_KEY, attachment_key
from bridge.session.ports import HistoryClient
from bridge.session.session import Session
from bridge.tasks import TaskGroup
from genesys_bridge_client.contract.events import MessageReceived, PresenceReceived, SessionResumed, TypingReceived

__all__ = [
    "HELD_EVENTS_MAX",
    "REORDER_MAX_HELD",
    "Backfill",
    "EntityKind",
    "HeldEvents",
    "InboundDispatcher",
    "ReorderBuffer",
    "classify",
    "fetch_missed",
    "message_time",
]

log = structlog.get_logger(__name__)


_BACKFILL_RATE_LIMIT_RETRIES = 3


class InboundDispatcher:
    """Turns protocol events into session events and resolved waiters. One per session."""

    __slots__ = ("_core", "_held", "_known", "_reorder", "_tasks", "disconnecting")

    def __init__(self, core: Session) -> None:
        self._core = core
        self._held: HeldEvents | None = None
        self._known: RecentIds | None = None
        self._tasks: TaskGroup | None = None
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

    def serve_in(self, tasks: TaskGroup) -> None:
        """Work that needs replies from the socket (the final history check) runs in ``tasks``, beside the pump."""
        self._tasks = tasks

    def hold(self) -> None:
        """A resume begins (call before the socket is pumped): hold live messages, typing and Disconnects
        until :meth:`catch_up` releases them, and snapshot the ids known now, before the resume."""
        self.disconnecting = False  # a final check cut short by a lost socket is done again by the resume
        self._held = HeldEvents()
        self._known = self._core.keeper.seen
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
                # §5.4: the customer's tokens were revoked (a session.logout, or another device): final.
                logout = core.logout
                detail = "session.logout" if logout is not None else "the customer was logged out"
                await core.finish("logged_out", detail=detail, cause=logout)
            case Configured():
                link.resolve(REAUTH_KEY, event)  # an open socket configured again with a renewed JWT
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
        self, reason: Literal["cleared", "closed_by_genesys"], event: ProtocolEvent, *, detail: str | None = None
    ) -> None:
        """Clear or server close: the answer to our own ``session.end``, or the end of the session."""
        if self._core.ending:
            self._core.link.resolve(END_KEY, event)
            return
        await self._core.finish(reason, detail=detail)

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
            missed = await self._fetch(core.keeper.seen)
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

    async def catch_up(self, cause: Literal["reconnect", "restart"], *, announce: bool = True) -> None:
        """After a resume: ``getJwt``, page history to a known id, publish ``session.resumed`` (unless not
        ``announce``: the caller published ``session.started`` instead) then each missed message once (§4.1,
        §9). A Disconnect among them (and newer than the checkpoint) ends the session. Then the live events
        held since :meth:`hold` are released.

        Raises:
            GenesysUnavailable: the socket or REST went away, or too many live events arrived meanwhile; the
                caller reconnects and tries again (held events are dropped: history has them).
        """
        core = self._core
        if self._known is None:
            self._known = core.keeper.seen
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
        if announce:
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

    async def _fetch(self, known: RecentIds) -> list[StructuredMessage]:
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
                if attempt == _BACKFILL_RATE_LIMIT_RETRIES:
                    core.metrics.rate_limit.dropped("history")
                    raise GenesysUnavailable(f"history rate limited: {exc}") from exc
                core.metrics.rate_limit.delayed("history", exc.retry_after_s)
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
                "get jwt",
                JWT_KEY,
                lambda p: p.request_jwt(tracing_id=JWT_KEY),
                timeout_s=self._core.settings.delivery_timeout_s,
            )
        except TimeoutError:
            raise GenesysUnavailable("no JwtResponse in time") from None
        if not isinstance(reply, JwtIssued):
            raise GenesysUnavailable(f"getJwt answered {type(reply).__name__}")
        return reply.jwt


class EntityKind(enum.Enum):
    """What a history entity (or a live StructuredMessage) means to the session."""

    OUTBOUND_MESSAGE = "outbound_message"  # agent/bot/system text or rich content: publish
    INBOUND_MESSAGE = "inbound_message"  # the guest's own message (ours, or from another connection)
    DISCONNECT = "disconnect"  # Outbound Presence Disconnect (§5.3)
    IGNORED = "ignored"  # typing, receipts, inbound presence events: nothing to publish from history


@dataclass(frozen=True, slots=True)
class Backfill:
    """The result of one backfill: ``missed`` oldest first; ``reached_known`` false means a possible gap."""

    missed: list[StructuredMessage]
    reached_known: bool
    pages: int


def message_time(message: StructuredMessage) -> datetime | None:
    """``channel.time`` parsed (aware UTC), or None when absent or unreadable (§9: may be null)."""
    return parse_genesys_time(message.channel.time if message.channel else None)


def classify(message: StructuredMessage) -> EntityKind:
    """Classify a StructuredMessage by direction, type and first event (§5.2, §5.3)."""
    inbound = (message.direction or "").lower() == "inbound"
    if message.type == "Event":
        event = message.events[0] if message.events else {}
        presence = event.get("presence") if isinstance(event, dict) else None
        if (
            not inbound
            and event.get("eventType") == "Presence"
            and isinstance(presence, dict)
            and presence.get("type") == "Disconnect"
        ):
            return EntityKind.DISCONNECT
        return EntityKind.IGNORED
    if message.type not in ("Text", "Structured"):
        return EntityKind.IGNORED  # Receipt and anything new
    return EntityKind.INBOUND_MESSAGE if inbound else EntityKind.OUTBOUND_MESSAGE


async def fetch_missed(
    client: HistoryClient,
    *,
    rest_base: str,
    jwt: str,
    origin: str | None,
    is_known: Callable[[str], bool],
    has_known: bool,
    page_size: int,
    max_pages: int,
) -> Backfill:
    """Page history from page 1 until a known id; return the unknown ones, oldest first.

    ``has_known`` False (nothing published yet) means every entity on the fetched pages is new.
    Raises whatever the client raises (``GenesysUnavailable`` is retryable: the caller reconnects).
    """
    collected: list[StructuredMessage] = []
    reached = not has_known
    pages = 0
    for page_number in range(1, max_pages + 1):
        page = await client.fetch_history(rest_base, jwt, page_number=page_number, page_size=page_size, origin=origin)
        pages += 1
        for entity in page.entities:  # newest first
            if entity.id is not None and is_known(entity.id):
                reached = True
                break
            collected.append(entity)
        if (has_known and reached) or not page.entities or page_number >= page.page_count:
            break
    if has_known and not reached:
        log.warning("backfill_gap", pages=pages, fetched=len(collected))
    collected.reverse()  # oldest first
    indexed = list(enumerate(collected))
    # Stable sort by channel.time; an entity without a time keeps the time of the one before it.
    keyed: list[tuple[datetime | None, int, StructuredMessage]] = []
    last: datetime | None = None
    for index, entity in indexed:
        when = message_time(entity) or last
        last = when
        keyed.append((when, index, entity))
    if all(when is not None for when, _, _ in keyed):
        keyed.sort(key=lambda item: (item[0], item[1]))
    return Backfill(missed=[entity for _, _, entity in keyed], reached_known=reached, pages=pages)


#: Live events one session may hold during a catch-up. A backfill takes a few REST round trips; an agent
#: does not write 100 messages meanwhile, so reaching it means something is wrong: reconnect instead.
HELD_EVENTS_MAX = 100


class HeldEvents:
    """A bounded FIFO of live protocol events; one per catch-up. Used from one session's tasks only."""

    __slots__ = ("_events", "_limit", "overflowed")

    def __init__(self, limit: int = HELD_EVENTS_MAX) -> None:
        self._limit = limit
        self._events: deque[ProtocolEvent] = deque()
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._events)

    def add(self, event: ProtocolEvent) -> None:
        """Hold ``event``; past the limit a typing event is dropped, anything else marks ``overflowed``."""
        if len(self._events) >= self._limit:
            if not isinstance(event, AgentTyping):
                self.overflowed = True
            return
        self._events.append(event)

    def pop(self) -> ProtocolEvent | None:
        """The oldest held event, or None when empty."""
        return self._events.popleft() if self._events else None


#: Messages one session may hold for reordering; a burst past it is released at once, in order.
REORDER_MAX_HELD = 100

_NO_TIME = datetime.min.replace(tzinfo=UTC)  # a message without channel.time sorts first


@dataclass(slots=True)
class _Held:
    due: float
    time: datetime
    arrival: int
    message: StructuredMessage = field(compare=False)


class ReorderBuffer:
    """Held live messages of one session, released in ``channel.time`` order once their hold ran out."""

    __slots__ = ("_arrivals", "_held", "_limit", "_window_s")

    def __init__(self, window_s: float, *, limit: int = REORDER_MAX_HELD) -> None:
        self._window_s = window_s
        self._limit = limit
        self._held: list[_Held] = []
        self._arrivals = 0

    def __len__(self) -> int:
        return len(self._held)

    def add(self, message: StructuredMessage, now: float) -> float:
        """Hold ``message`` (arrived at ``now``); return when the caller should call :meth:`due` next."""
        self._arrivals += 1
        self._held.append(_Held(now + self._window_s, message_time(message) or _NO_TIME, self._arrivals, message))
        return now + self._window_s

    def due(self, now: float) -> list[StructuredMessage]:
        """What to publish at ``now``, in order: every message stamped no later than one whose hold ran out.

        Past the size limit, everything is released (the bound wins over the order).
        """
        if len(self._held) > self._limit:
            return self.drain()
        expired = [h for h in self._held if h.due <= now]
        if not expired:
            return []
        cutoff = max(h.time for h in expired)
        out = sorted((h for h in self._held if h.time <= cutoff), key=lambda h: (h.time, h.arrival))
        self._held = [h for h in self._held if h.time > cutoff]
        return [h.message for h in out]

    def drain(self) -> list[StructuredMessage]:
        """Everything held, in order (a Disconnect, or the session ending)."""
        out = sorted(self._held, key=lambda h: (h.time, h.arrival))
        self._held = []
        return [h.message for h in out]
