"""One session: the object that owns its state, its record and its wire.

:class:`Session` holds the record keeper (the record changes only through its typed methods), event
stamping, the wire (:class:`GenesysLink`), the send budget, the ready gate and the sends awaiting an
echo; it moves the state machine (:func:`transition`) and ends the session (:meth:`Session.finish`). Its
helpers each do one job on it: the actor runs its tasks and loops, the inbound dispatcher turns what
Genesys says into events, the command runner carries out and settles commands.

**The record keeper.** Keeps one session's :class:`~bridge.record.SessionRecord` current and durable.

The record is immutable; the keeper swaps in ``replaced(...)`` snapshots, so a store always
persists a consistent one. It also owns the two counters that must survive a restart:

- **seq** is handed out in blocks (hi-lo): the record stores the *reserved* high-water mark, saved before
  any number of a new block is used. After a crash, numbering continues above everything published, so
  ``seq`` stays monotonic (a gap is possible, a repeat is not).
- **seen ids**: a Genesys message id is marked seen only after its event was confirmed by the broker
  (docs/durability.md); :meth:`checkpoint` then saves the record.
- **recent outcomes**: the settled outcome of each command (:meth:`remember_outcome`), saved before the
  command is acked, so a redelivery to the next process is answered instead of executed again.

Callers: the session actor, from its own tasks. Save failures (a store error, or the journal's broker
blipping: any ``BridgeError``) are logged and counted, never fatal: the session keeps running, the record
stays pending in the store, and the next save or re-journal carries the newest snapshot.

**Events.** One session's events: how they are built and how they are published.

Every event carries a fresh ``event_id``, the per-session ``seq``, ``occurred_at`` and the causing
command's ids (docs/contract.md; built by :mod:`bridge.contract.outcomes`, the one place outcomes are
built). :class:`SessionEvents` stamps and publishes one session's events; ``publish`` returns once the
broker confirmed the event.

A broker blip never ends a Genesys session: a retryable publish error (decided by ``is_retryable``) is
retried with the *same* event, without a limit, on the injected backoff, until it is confirmed or the
session's task is cancelled (the drain deadline). The publisher itself buffers while the broker is away.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog
from pydantic import SecretStr

from bridge.contract.outcomes import SettledOutcome, event_stamp
from bridge.errors import BridgeError, BrokerError, GenesysRejected, SessionGone, is_retryable
from bridge.genesys.auth import Tokens
from bridge.genesys.deployment_config import DeploymentFeatures
from bridge.genesys.frames import StructuredMessage
from bridge.observability.metrics import Metrics
from bridge.ports import Clock, EventSink, SessionStore, TraceContext
from bridge.recent_ids import RecentIds
from bridge.record import RECENT_CONNECTS_KEPT, SessionRecord
from bridge.session.auth import Credentials
from bridge.session.flow import Inbox, SendBudget
from bridge.session.link import GenesysLink
from bridge.session.ports import Backoff, Endpoints, SessionDeps
from bridge.session.signal import Signal
from bridge.session.state import TERMINAL_STATES, SessionState, SessionTrigger, transition
from bridge.tasks import stop_if_asked
from genesys_bridge_client.contract import Command, Event
from genesys_bridge_client.contract.events import (
    CommandOutcome,
    EndReason,
    MessengerFeatures,
    SessionEnded,
    SessionStateChanged,
)

__all__ = [
    "SEQ_BLOCK",
    "PendingSends",
    "RecordKeeper",
    "Session",
    "SessionEvents",
    "SessionGate",
    "SessionStopping",
]

log = structlog.get_logger(__name__)


class SessionStopping(Exception):
    """Raised by :meth:`SessionGate.wait` when the bridge is draining and the session is not ready: the
    command that waited is not run here but requeued, so the next process runs it (docs/sessions.md)."""


class SessionGate:
    """Open while the session is active and caught up; :meth:`wait` also returns once it is over, and raises
    :class:`SessionStopping` once the bridge drains while the session is not ready (a reconnect would never
    come: a draining session does not reconnect).

    ``opened_at`` is the ``Clock.monotonic()`` of the last :meth:`open`: the inbox age of a command is not
    counted while the session was not caught up (a paced recovery, a long reconnect).
    """

    __slots__ = ("_event", "opened_at", "over", "ready", "stopping")

    def __init__(self) -> None:
        self._event = Signal()
        self.ready = False
        self.over = False
        self.stopping = False
        self.opened_at: float | None = None

    def open(self, at: float) -> None:
        self.ready = True
        self.opened_at = at
        self._event.set()

    def close(self) -> None:
        self.ready = False
        if not self.over:
            self._event.clear()

    def finish(self) -> None:
        self.ready = False
        self.over = True
        self._event.set()

    def stop(self) -> None:
        """The bridge drains: wake every waiter; those the session cannot serve get :class:`SessionStopping`."""
        self.stopping = True
        self._event.set()

    async def wait(self) -> bool:
        """True once the session is ready for sends; False when it is over.

        Raises:
            SessionStopping: the bridge is draining and the session is not ready (requeue the command).
        """
        while True:
            if self.over:
                return False
            if self.ready:
                return True
            if self.stopping:
                raise SessionStopping("the bridge is draining and the session is not connected")
            self._event.clear()
            await self._event.wait()


def _signature(text: str | None, message: StructuredMessage | None = None) -> str:
    if message is not None:
        text = message.text
        for item in message.content:
            response = item.get("buttonResponse") if isinstance(item, dict) else None
            if isinstance(response, dict) and not text:
                text = str(response.get("text") or response.get("payload") or "")
    return (text or "").strip()


class PendingSends:
    """Sends without an echo yet. After a socket loss their echo may only show up in history (which has no
    tracingId, §9), so an Inbound history message with the same text is taken as the echo (§11.11).

    Limit, documented: two unanswered sends with identical text in one outage are matched in send order.
    """

    __slots__ = ("_found", "_pending")

    def __init__(self) -> None:
        self._pending: dict[str, str] = {}
        self._found: dict[str, StructuredMessage] = {}

    def add(self, tracing_id: str, text: str | None) -> str:
        """Remember a send; returns its signature (what the record journals)."""
        signature = self._pending[tracing_id] = _signature(text)
        return signature

    def restore(self, pending: dict[str, str]) -> None:
        """Sends journalled by a previous process (``SessionRecord.pending_sends``), to match in its backfill."""
        self._pending.update(pending)

    def discard(self, tracing_id: str) -> None:
        self._pending.pop(tracing_id, None)
        self._found.pop(tracing_id, None)

    def match(self, message: StructuredMessage) -> bool:
        """Claim ``message`` (an Inbound history entity) as the echo of a pending send; True if it was one."""
        signature = _signature(None, message)
        for tracing_id, pending in self._pending.items():
            if pending == signature and tracing_id not in self._found:
                self._found[tracing_id] = message
                return True
        return False

    def take_echo(self, tracing_id: str) -> StructuredMessage | None:
        return self._found.pop(tracing_id, None)


@functools.lru_cache(maxsize=256)
def messenger_features(found: DeploymentFeatures) -> MessengerFeatures:
    """The contract's view of a deployment's features (``session.started.features``).

    One object per distinct set of features, shared by every session of the deployments that have it
    (about 1 KiB each, and a process holds thousands of sessions of a few deployments). Caller's duty:
    never change it.
    """
    disconnect: Literal["off", "read_only", "send"] | None = None
    if found.disconnect_enabled is False:
        disconnect = "off"
    elif found.disconnect_enabled:
        disconnect = found.disconnect_mode
    upload_types = found.upload_types
    return MessengerFeatures(
        clear=found.clear_enabled,
        disconnect=disconnect,
        user_typing=found.user_typing_enabled,
        autostart=found.autostart_enabled,
        upload_types=list(upload_types) if upload_types is not None else None,
        max_upload_bytes=found.upload_max_bytes,
    )


class Session:
    """One session's shared state. Created by the actor; used from its tasks on one event loop."""

    __slots__ = (
        "before_end",
        "budget",
        "credentials",
        "deps",
        "end_code",
        "end_detail",
        "end_reason",
        "ending",
        "endpoints",
        "events",
        "features",
        "gate",
        "inbox",
        "keeper",
        "last_agent_activity",
        "link",
        "logout",
        "metrics",
        "new_session",
        "pending",
        "restored_sends",
        "settings",
        "state",
    )

    def __init__(
        self,
        *,
        deps: SessionDeps,
        keeper: RecordKeeper,
        link: GenesysLink,
        endpoints: Endpoints,
        credentials: Credentials,
    ) -> None:
        s = deps.settings
        self.deps = deps
        self.credentials = credentials
        self.settings = s
        self.metrics = deps.metrics
        self.keeper = keeper
        self.events = SessionEvents(keeper=keeper, sink=deps.sink, clock=deps.clock, backoff=deps.backoff)
        self.link = link
        self.endpoints = endpoints
        self.budget = SendBudget(rate_per_s=s.send_rate_per_s, burst=s.send_burst, clock=deps.clock)
        self.gate = SessionGate()
        self.pending = PendingSends()
        self.pending.restore(keeper.record.pending_sends)
        self.restored_sends = frozenset(keeper.record.pending_sends)  # journalled by a previous process
        self.inbox = Inbox(s.inbox_size)
        self.state = SessionState.STARTING
        self.ending = False  # a session.end is in progress: Clear/close events end it as guest_ended
        self.end_reason: EndReason | None = None
        self.end_detail: str | None = None
        self.end_code: int | None = None  # the Genesys/HTTP code behind an auth_failed end
        #: The session.logout being carried out, if any: the LogoutEvent it draws ends the session by it.
        self.logout: Command | None = None
        #: SessionResponse.newSession of the first configure (None until then): autostart needs a new one.
        self.new_session: bool | None = None
        #: ``Clock.monotonic()`` of the agent side's last message, typing or presence (for the idle timeout).
        self.last_agent_activity = deps.clock.monotonic()
        #: Awaited by :meth:`finish` before ``session.ended`` (what is held back must be published first).
        self.before_end: Callable[[], Awaitable[None]] | None = None
        #: What the deployment allows, from its config.json (None: not known, so try and read the answer).
        self.features: MessengerFeatures | None = None
        self.metrics.sessions.labels(state=self.state.value).inc()

    @property
    def session_id(self) -> str:
        return self.keeper.session_id

    def note_agent_activity(self) -> None:
        """The agent side did something: the idle timeout starts again."""
        self.last_agent_activity = self.deps.clock.monotonic()

    async def read_features(self) -> None:
        """Learn what the deployment allows from its ``config.json`` (§2.2), before the first configure.

        Never fatal: a config that cannot be read in time leaves :attr:`features` unknown, and the session
        falls back to trying each feature and reading Genesys' answer.
        """
        source = self.deps.features
        if source is None:
            return
        deployment_id = self.keeper.record.deployment_id
        try:
            async with asyncio.timeout(self.settings.ws_connect_timeout_s):
                found = await source.get(deployment_id, config_url=self.endpoints.deployment_config_url(deployment_id))
        except TimeoutError:
            log.warning("deployment_config_unavailable", deployment_id=deployment_id, error="timed out")
            return
        if found is not None:
            self.features = messenger_features(found)

    def contract_features(self) -> MessengerFeatures:
        """What the deployment allows, as published in ``session.started`` (all unknown until it is read)."""
        return self.features or MessengerFeatures()

    async def set_state(self, trigger: SessionTrigger, detail: str | None = None) -> SessionState:
        """Move the state machine, keep the gauge right, publish ``session.state_changed``, save the record."""
        old = self.state
        new = transition(old, trigger)
        self.state = new
        self.metrics.sessions.labels(state=old.value).dec()
        if new not in TERMINAL_STATES:
            self.metrics.sessions.labels(state=new.value).inc()
        # DEBUG: the session.state_changed event carries the same, and three INFO lines per session start were a
        # visible share of the CPU of opening sessions. session_ended and every error stay at INFO and above.
        log.debug("session_state_changed", old=old.value, new=new.value, trigger=trigger.value, detail=detail)
        self.keeper.note_state(new.value, closed=new in (SessionState.ENDED, SessionState.FAILED))
        try:
            await self.events.publish(
                SessionStateChanged(**await self.events.stamp(), old=old.value, new=new.value, detail=detail)
            )
        except BridgeError:
            await self.keeper.save()  # a final broker error: the new state still reaches the store
            raise
        await self.keeper.save()
        return new

    async def end_refused(self, reason: EndReason, refusal: GenesysRejected) -> None:
        """End the session because Genesys refused it: ``reason``, with the refusal's code and detail."""
        await self.finish(reason, detail=f"{refusal.code}: {refusal.detail}", code=refusal.code)

    async def finish(
        self,
        reason: EndReason,
        *,
        trigger: SessionTrigger = SessionTrigger.GONE,
        detail: str | None = None,
        cause: Command | None = None,
        failure: str = "gave_up",
        code: int | None = None,
    ) -> None:
        """End the session for good: state, ``session.ended``, closed record, waiters failed, socket closed.

        Idempotent: only the first call counts (an agent Disconnect and a socket loss may race). The socket
        is closed whatever happens to the events (a final broker error, a cancel): never left open.
        """
        if self.gate.over or self.state in TERMINAL_STATES:
            return
        self.end_reason, self.end_detail, self.end_code = reason, detail, code
        self.gate.finish()
        self.inbox.close()
        self.link.fail_all(SessionGone(reason, detail or ""))
        try:
            if self.before_end is not None:
                await self.before_end()
            await self.set_state(trigger, detail=reason)
            self.metrics.sessions_ended.labels(reason=reason).inc()
            if trigger is SessionTrigger.FAIL:
                self.metrics.session_failures.labels(reason=failure).inc()
            log.info("session_ended", reason=reason, detail=detail)
            await self.events.publish(SessionEnded(**await self.events.stamp(cause), reason=reason, detail=detail))
        finally:
            await self.link.close()


#: seq numbers reserved per store write. Bigger: fewer writes; the cost is a larger gap after a crash.
SEQ_BLOCK = 64


class RecordKeeper:
    """The live record of one session and its seq counter."""

    __slots__ = ("_clock", "_metrics", "_record", "_seq", "_store")

    def __init__(
        self, record: SessionRecord, *, clock: Clock, store: SessionStore | None, metrics: Metrics | None = None
    ) -> None:
        self._record = record
        self._clock = clock
        self._store = store
        self._metrics = metrics
        self._seq = record.seq  # last number handed out; the record holds the reserved mark

    @property
    def record(self) -> SessionRecord:
        return self._record

    @property
    def session_id(self) -> str:
        return self._record.session_id

    def _update(self, **changes: Any) -> None:
        """Swap in a copy with ``changes`` (not saved yet). Only this class's typed methods call it."""
        self._record = self._record.replaced({**changes, "updated_at": self._clock.now()})

    def note_state(self, state: str, *, closed: bool) -> None:
        """The session's state moved; ``closed`` records that it is over for good (not saved yet)."""
        self._update(state=state, closed=closed)

    def note_tokens(self, tokens: Tokens) -> None:
        """Keep an authenticated session's new JWT and refresh token (saved, encrypted, with the next save)."""
        self._update(
            authenticated=True,
            auth_jwt=SecretStr(tokens.jwt),
            auth_refresh_token=SecretStr(tokens.refresh_token),
            auth_jwt_expires_at=tokens.expires_at,
        )

    @property
    def trace(self) -> TraceContext | None:
        """The trace context of the newest command that carried one (the session's later events carry it)."""
        record = self._record
        return TraceContext(record.traceparent, record.tracestate) if record.traceparent else None

    def note_connect(self, window_s: float) -> None:
        """A Genesys connect is about to be made now: remember it for the next owner's connect window (the
        connects of the last ``window_s`` seconds are kept; saved with the next save)."""
        now = self._clock.now().timestamp()
        recent = tuple(t for t in self._record.recent_connects if t > now - window_s)
        self._update(recent_connects=(*recent, now)[-RECENT_CONNECTS_KEPT:])

    def note_announced(self) -> None:
        """``session.started`` was published (saved with the next save: until then, a next owner that resumes
        the session publishes it again, at least once)."""
        if self._record.unannounced_start is not None:
            self._update(unannounced_start=None)

    def note_trace(self, trace: TraceContext) -> None:
        """Carry ``trace`` onto this session's later events (saved with the next save)."""
        if trace.traceparent != self._record.traceparent or trace.tracestate != self._record.tracestate:
            self._update(traceparent=trace.traceparent, tracestate=trace.tracestate)

    def journal_send(self, tracing_id: str, signature: str) -> None:
        """A send is about to leave: journal it, so a next process recognises it in its backfill (not saved)."""
        self._update(pending_sends={**self._record.pending_sends, tracing_id: signature})

    def forget_sends(self, tracing_ids: Iterable[str]) -> None:
        """Stop journalling these sends: settled, or matched after a restart (not saved yet)."""
        gone = set(tracing_ids)
        self._update(pending_sends={k: v for k, v in self._record.pending_sends.items() if k not in gone})

    async def save(self) -> bool:
        """Persist the current snapshot when a store is configured; False when that failed (logged, counted).

        Never raises a ``BridgeError``: the journal raises ``BrokerUnavailable``/``PublishTimeout`` when its
        broker blips, and a broker blip must never end a Genesys session. The store keeps the record pending.
        """
        if self._store is None:
            return True
        try:
            await self._store.save(self._record)
        except BridgeError as exc:
            log.error("session_record_save_failed", error=str(exc), error_type=type(exc).__name__)
            if self._metrics is not None:
                self._metrics.record_save_failures.inc()
            return False
        return True

    async def next_seq(self) -> int:
        """The next event seq. Reserves (and saves) a new block first when the current one is spent."""
        self._seq += 1
        if self._seq > self._record.seq:
            self._update(seq=self._seq + SEQ_BLOCK - 1)
            await self.save()
        return self._seq

    def remember_outcome(self, outcome: SettledOutcome) -> None:
        """Add ``outcome`` to the record's bounded tail (not saved yet; call :meth:`save` before the ack)."""
        self._update(recent_outcomes=self._record.recent_outcomes.with_added(outcome))

    def settled(self, command_id: str) -> SettledOutcome | None:
        """The settled outcome of ``command_id`` kept in the record (perhaps by a previous process)."""
        return self._record.recent_outcomes.get(command_id)

    def is_seen(self, message_id: str | None) -> bool:
        return message_id is not None and message_id in self._record.recent_message_ids

    @property
    def seen(self) -> RecentIds:
        """The ids published now (an immutable value: later ones do not change it)."""
        return self._record.recent_message_ids

    def is_older_than_checkpoint(self, when: datetime | None) -> bool:
        """True when ``when`` is before the newest message published (a replayed frame, §11.3 / issue)."""
        last = self._record.last_message_time
        return when is not None and last is not None and when < last

    async def checkpoint(self, message_id: str, when: datetime | None) -> None:
        """Mark ``message_id`` seen (its event is confirmed) and save the record."""
        self.mark_seen(message_id, when)
        await self.save()

    def note_configured(self, *, ttl_s: int | None, expires_at: datetime | None) -> None:
        """Remember Genesys' session timing from a ``SessionResponse`` (§5.1); not saved yet."""
        ttl_s = ttl_s if ttl_s is not None else self._record.genesys_ttl_s
        if expires_at is None and ttl_s is not None:
            expires_at = self._clock.now() + timedelta(seconds=ttl_s)
        self._update(genesys_ttl_s=ttl_s, expires_at=expires_at)

    def expired_by_now(self) -> bool:
        """True when the session's known expiry has passed: a resume answered ``newSession:true`` then means
        Genesys expired it (§7 "inactivity > durationSeconds"), not that the conversation was lost otherwise."""
        expires_at = self._record.expires_at
        return expires_at is not None and self._clock.now() >= expires_at

    def mark_seen(self, message_id: str, when: datetime | None) -> None:
        """Mark ``message_id`` seen without saving (the caller saves, e.g. with a command's outcome).

        A message is activity, which moves Genesys' expiry on by the TTL (§7, as KMP's SessionDurationHandler).
        """
        changes: dict[str, Any] = {
            "last_message_id": message_id,
            "recent_message_ids": self._record.recent_message_ids.with_added(message_id),
        }
        if self._record.genesys_ttl_s is not None:
            changes["expires_at"] = self._clock.now() + timedelta(seconds=self._record.genesys_ttl_s)
        last = self._record.last_message_time
        if when is not None and (last is None or when >= last):
            changes["last_message_time"] = when
        self._update(**changes)


class SessionEvents:
    """Event factory and publisher for one session. Use from the session's own tasks only."""

    __slots__ = ("_backoff", "_clock", "_keeper", "_sink")

    def __init__(self, *, keeper: RecordKeeper, sink: EventSink, clock: Clock, backoff: Backoff) -> None:
        self._keeper = keeper
        self._sink = sink
        self._clock = clock
        self._backoff = backoff

    async def stamp(self, cause: Command | None = None) -> dict[str, Any]:
        """The common fields of a new event; takes the next ``seq``."""
        seq = await self._keeper.next_seq()
        return event_stamp(session_id=self._keeper.session_id, seq=seq, occurred_at=self._clock.now(), cause=cause)

    async def outcome(self, result: SettledOutcome, cause: Command) -> CommandOutcome:
        """Build (not publish) ``result`` as the ``command.outcome`` of ``cause``, numbered in this session;
        settle it through the OutcomeBook."""
        return result.event(await self.stamp(cause))

    async def publish(self, event: Event) -> None:
        """Publish ``event`` routed by this session's deployment and route, with its newest trace context;
        waits for the broker's confirm.

        A retryable broker error (no confirm in time, broker away) is retried with the *same* event (same
        ``event_id``, so a duplicate is recognisable) for as long as it takes, waiting the injected backoff
        between tries; cancelling the caller's task is the only way out. A final broker error is raised.
        """
        delays: Iterator[float] | None = None
        attempt = 0
        while True:
            try:
                record = self._keeper.record
                await self._sink.publish(
                    event,
                    deployment_id=record.deployment_id,
                    route=record.route,
                    trace=self._keeper.trace,
                )
            except BrokerError as exc:
                if not is_retryable(exc):
                    raise
                stop_if_asked()  # a cancel of this task that the broker call turned into an error of its own
                attempt += 1
                delays = delays or self._backoff()
                delay = next(delays)
                log.warning(
                    "event_publish_retry", event_type=event.type, attempt=attempt, delay_s=delay, error=str(exc)
                )
                await asyncio.sleep(delay)
            else:
                return
