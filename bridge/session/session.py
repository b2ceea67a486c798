"""One session: the object that owns its state, its record and its wire.

:class:`Session` holds the record keeper (the record changes only through its typed methods), event
stamping, the wire (:class:`GenesysLink`), the send budget, the ready gate and the sends awaiting an
echo; it moves the state machine (:func:`transition`) and ends the session (:meth:`Session.finish`). Its
helpers each do one job on it: the actor runs its tasks and loops, the inbound dispatcher turns what
Genesys says into events, the command runner carries out and settles commands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal

import structlog

from bridge.contract import Command
from bridge.contract.events import EndReason, MessengerFeatures, SessionEnded, SessionStateChanged
from bridge.errors import BridgeError, SessionGone
from bridge.genesys.deployment_config import DeploymentFeatures
from bridge.genesys.frames import StructuredMessage
from bridge.session.events import SessionEvents
from bridge.session.inbox import Inbox
from bridge.session.keeper import RecordKeeper
from bridge.session.link import GenesysLink
from bridge.session.pacing import SendBudget
from bridge.session.ports import Endpoints, SessionDeps
from bridge.session.state import TERMINAL_STATES, SessionState, SessionTrigger, transition

__all__ = ["PendingSends", "Session", "SessionGate", "SessionStopping"]

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

    def __init__(self) -> None:
        self._event = asyncio.Event()
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


def messenger_features(found: DeploymentFeatures) -> MessengerFeatures:
    """The contract's view of a deployment's features (``session.started.features``)."""
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

    def __init__(self, *, deps: SessionDeps, keeper: RecordKeeper, link: GenesysLink, endpoints: Endpoints) -> None:
        s = deps.settings
        self.deps = deps
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
        log.info("session_state_changed", old=old.value, new=new.value, trigger=trigger.value, detail=detail)
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

    async def finish(
        self,
        reason: EndReason,
        *,
        trigger: SessionTrigger = SessionTrigger.GONE,
        detail: str | None = None,
        cause: Command | None = None,
        failure: str = "gave_up",
    ) -> None:
        """End the session for good: state, ``session.ended``, closed record, waiters failed, socket closed.

        Idempotent: only the first call counts (an agent Disconnect and a socket loss may race). The socket
        is closed whatever happens to the events (a final broker error, a cancel): never left open.
        """
        if self.gate.over or self.state in TERMINAL_STATES:
            return
        self.end_reason, self.end_detail = reason, detail
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
