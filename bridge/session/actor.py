"""One session actor: one owned task per session that pumps its socket and runs its commands in order.

:meth:`SessionActor.run` is awaited by the registry inside its TaskGroup. Inside, a TaskGroup of its own
holds its loops: the **connection loop** (connect, configure, pump frames, reconnect with jittered
backoff and resume, §4.1, §6), the **command loop** (the bounded inbox, one command at a time) and, when
``BRIDGE_SESSION_IDLE_TIMEOUT_S`` is set, the **idle loop**. Its pings and echoes
(:class:`bridge.session.keepalive.Keepalive`) wait on the process's heartbeat, and run in that TaskGroup
only while a round trip is in flight.

Failure containment: ``run`` never raises except ``CancelledError``; a crash is reported
as ``session.ended`` reason ``failed``, logged, and counted in ``session_failures``. An error that ends a
session whose task was asked to stop (the drain's deadline) is logged and raised as that cancel instead:
the record stays live for the next owner.

Shutdown: :meth:`stop` closes the inbox; the in-flight command finishes (the registry bounds the wait),
or is requeued at once when it waits for a session that is not connected (a draining session does not
reconnect); the socket is closed *without* ending the Genesys session (never ``closeSession``, never
``Clear``, §4.9); commands never started are requeued so the broker redelivers them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Literal

import structlog

from bridge.contract.outcomes import SettledOutcome
from bridge.errors import (
    GenesysAuthFailed,
    GenesysRateLimited,
    GenesysRejected,
    GenesysUnavailable,
    SessionGone,
    is_retryable,
)
from bridge.genesys.auth import UNAUTHORIZED, refuses_authentication
from bridge.genesys.events import Configured
from bridge.genesys.protocol import GuestProtocol
from bridge.genesys.urls import resolve_origin
from bridge.ports import Envelope
from bridge.record import SessionRecord
from bridge.session.auth import Credentials
from bridge.session.commands import CommandRunner
from bridge.session.flow import Offer
from bridge.session.inbound import InboundDispatcher
from bridge.session.keepalive import Keepalive
from bridge.session.link import GenesysLink
from bridge.session.outcomes import tracing_id_for
from bridge.session.ports import SessionDeps
from bridge.session.session import RecordKeeper, Session, SessionEvents
from bridge.session.signal import Signal
from bridge.session.state import TERMINAL_STATES, SessionState, SessionTrigger
from bridge.tasks import TaskGroup, asked_to_stop, stop_if_asked
from genesys_bridge_client.contract.commands import SessionAuth
from genesys_bridge_client.contract.events import EndReason, SessionStarted

__all__ = ["SessionActor"]

log = structlog.get_logger(__name__)

Cause = Literal["start", "restart"]
#: Told ``(session_id, result)`` when a session resumed at boot is recovered (``bridge.recovery``).
RecoveryReport = Callable[[str, str], None]


class SessionActor:
    """One Genesys session. Build it, :meth:`offer` envelopes, await :meth:`run` in a TaskGroup."""

    __slots__ = (
        "_cause",
        "_configured_once",
        "_core",
        "_current",
        "_delays",
        "_idle_ending",
        "_inbound",
        "_keepalive",
        "_on_recovered",
        "_outage_since",
        "_runner",
        "_stopping",
        "_wake",
    )

    def __init__(
        self,
        record: SessionRecord,
        deps: SessionDeps,
        *,
        cause: Cause = "start",
        on_recovered: RecoveryReport | None = None,
        grant: SessionAuth | None = None,
    ) -> None:
        """``on_recovered`` (for ``cause="restart"``) is told ``(session_id, result)`` once the session is
        resumed and caught up (``resumed``) or over (``ended:<reason>``). ``grant``: the customer's OAuth code
        or ID token from ``session.start``, for an authenticated session (§4.2)."""
        settings = deps.settings
        endpoints = deps.endpoints(record.region)
        link = GenesysLink(
            protocol=GuestProtocol(token=record.token.get_secret_value(), deployment_id=record.deployment_id),
            connector=deps.connector,
            url=endpoints.websocket_url(record.deployment_id, application=settings.application_name),
            origin=resolve_origin(settings, record.deployment_id, record.origin),
            connect_timeout_s=settings.ws_connect_timeout_s,
            tracer=deps.tracer,
        )
        keeper = RecordKeeper(record, clock=deps.clock, store=deps.store, metrics=deps.metrics)
        credentials = Credentials(
            keeper=keeper,
            client=deps.auth,
            rest_base=endpoints.rest_base,
            origin=resolve_origin(settings, record.deployment_id, record.origin),
            clock=deps.clock,
            grant=grant,
            refresh_first=cause == "restart",  # the journalled JWT has likely expired meanwhile
        )
        self._core = Session(deps=deps, keeper=keeper, link=link, endpoints=endpoints, credentials=credentials)
        self._inbound = InboundDispatcher(self._core)
        self._runner = CommandRunner(self._core)
        self._keepalive = Keepalive(self._core)
        self._cause = cause
        self._on_recovered = on_recovered
        self._configured_once = False
        self._stopping = False
        self._current: Envelope | None = None
        self._wake = Signal()  # cuts a backoff sleep short on stop
        self._idle_ending = False  # the idle timer is ending the session: let it finish
        self._outage_since: float | None = None
        self._delays: Iterator[float] | None = None

    # --- the registry's handle -------------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return self._core.session_id

    @property
    def deployment_id(self) -> str:
        return self._core.keeper.record.deployment_id

    @property
    def route(self) -> str | None:
        return self._core.keeper.record.route

    @property
    def state(self) -> SessionState:
        return self._core.state

    @property
    def record(self) -> SessionRecord:
        return self._core.keeper.record

    @property
    def seq(self) -> int:
        """The last event ``seq`` used for this session."""
        return self._core.keeper.record.seq

    @property
    def connected_at(self) -> float | None:
        """``Clock.monotonic()`` of when the session last became ready for sends, or None while it is not."""
        gate = self._core.gate
        return gate.opened_at if gate.ready else None

    def settled(self, command_id: str) -> SettledOutcome | None:
        """The outcome of ``command_id`` if this session settled it (kept in its record across restarts)."""
        return self._core.keeper.settled(command_id)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def offer(self, envelope: Envelope) -> Offer:
        """Queue ``envelope`` without waiting (``FULL``/``CLOSED`` leave it to the caller)."""
        return self._core.inbox.offer(envelope)

    def stop(self) -> None:
        """Begin a drain: take no more commands, finish the current one, then close the socket."""
        self._stopping = True
        self._core.inbox.close()
        self._core.gate.stop()  # a command waiting for a reconnect is requeued, not waited for
        self._wake.set()

    # --- the task --------------------------------------------------------------------------------------

    async def run(self) -> None:
        """The session's life. Returns when it ended, failed or was stopped; raises only ``CancelledError``."""
        core = self._core
        with structlog.contextvars.bound_contextvars(session_id=self.session_id):
            try:
                async with TaskGroup() as tg:
                    self._keepalive.start(tg)
                    try:
                        connection = tg.create_task(self._connection_loop())
                        idle = (
                            tg.create_task(self._idle_loop(core.settings.session_idle_timeout_s))
                            if core.settings.session_idle_timeout_s is not None
                            else None
                        )
                        await self._command_loop()
                        if not core.gate.over:
                            await self._suspend()
                        self._wake.set()  # a connection loop waiting out a backoff returns now
                        self._keepalive.stop()
                        if idle is not None and not self._idle_ending:  # an idle end in progress finishes
                            idle.cancel()
                        await connection
                    finally:
                        # Before the group exits, whatever ends it (the end, a crash, a cancel): a beat due
                        # while it winds down would start a task in a group that takes no more.
                        self._keepalive.stop()
            except Exception as exc:
                if asked_to_stop():
                    # Cancelled (the drain's deadline) while a call ended the cancel with an error of its own,
                    # which a TaskGroup raises before the cancel: suspended, not crashed. The record stays
                    # live, so the next owner resumes the session.
                    log.warning("session_cancelled_with_error", error=repr(exc), exc_info=exc)
                    # Python 3.13's TaskGroup cancels this task again when it raises a child's error over a
                    # cancel from outside, so that the cancel is not lost: it would end the clean-up below at
                    # its first await. Take it here; the task still ends cancelled.
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.sleep(0)
                    raise asyncio.CancelledError from exc
                log.exception("session_crashed", error=repr(exc))
                await self._report_crash(exc)
            finally:
                if core.end_reason is not None:
                    self._report_recovery(f"ended:{core.end_reason}")
                try:
                    await self._settle_leftovers()
                finally:
                    await core.link.close()  # idempotent; a cancel (drain deadline) must not leak the socket
                    if core.state not in TERMINAL_STATES:
                        core.metrics.sessions.labels(state=core.state.value).dec()

    def _report_recovery(self, result: str) -> None:
        """Tell the registry's recovery progress, once, how this resumed session came back."""
        report, self._on_recovered = self._on_recovered, None
        if report is not None:
            report(self.session_id, result)

    async def _command_loop(self) -> None:
        core = self._core
        while (envelope := await core.inbox.next()) is not None:
            core.metrics.inbox_depth.dec()
            self._current = envelope
            await self._runner.run(envelope)
            self._current = None

    async def _suspend(self) -> None:
        """Shutdown: close the socket without ending the session; the record stays live for a resume."""
        try:
            await self._core.set_state(SessionTrigger.SHUTDOWN, detail="bridge shutting down")
        finally:
            self._core.gate.finish()
            self._core.link.fail_all(SessionGone("suspended", "bridge shutting down"))
            await self._core.link.close()

    async def _settle_leftovers(self) -> None:
        core = self._core
        leftovers = core.inbox.drain()
        core.metrics.inbox_depth.dec(len(leftovers))
        current, self._current = self._current, None
        if current is not None:  # cancelled or crashed mid-command: the broker redelivers it
            await core.deps.book.requeue(current)
        ended = core.state in (SessionState.ENDED, SessionState.FAILED)
        for envelope in leftovers:
            if ended:
                try:
                    await self._runner.settle_unstarted(envelope)
                except Exception:
                    log.exception("command_settle_failed", command_id=envelope.command.command_id)
                else:
                    continue
            await core.deps.book.requeue(envelope)

    async def _report_crash(self, exc: BaseException) -> None:
        core = self._core
        try:
            if core.state in TERMINAL_STATES:
                return
            # The type only: exception text can carry anything (a URL, a frame); the log has the full story.
            detail = f"internal error: {type(_first_leaf(exc)).__name__}"
            await core.finish("failed", trigger=SessionTrigger.FAIL, detail=detail, failure="crash")
        except Exception:
            log.exception("session_crash_report_failed")
            core.gate.finish()

    # --- connection ------------------------------------------------------------------------------------

    async def _interruptible_wait(self, delay_s: float) -> None:
        """Wait ``delay_s`` unless :meth:`stop` wakes us first (then the caller sees ``_done()``). A cancel
        always raises here: ``asyncio.timeout`` never returns a wake-up that came with it, as ``wait_for`` can."""
        if delay_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay_s):
                    await self._wake.wait()

    async def _connection_loop(self) -> None:
        core = self._core
        s = core.settings
        if self._cause == "restart":  # recovery: wait for this session's connect slot (no stampede)
            await self._interruptible_wait(core.deps.pacer.reserve())
            core.metrics.recovery_pending.dec()
            if self._done():
                return
        await core.set_state(SessionTrigger.CONNECT)
        await core.read_features()
        while not self._done():
            wait_at_least = 0.0
            try:
                # §8: every new connection counts against the deployment's per-minute connection limit.
                delay = core.deps.connects.reserve(self.deployment_id, self.session_id)
                if delay > 0:
                    core.metrics.rate_limit.delayed("connect", delay)
                    await self._interruptible_wait(delay)
                    if self._done():
                        return
                core.keeper.note_connect(core.deps.connects.window_s)
                configured = await core.link.open(
                    start_new=False,
                    tracing_id=tracing_id_for(self.session_id, "cfg"),
                    jwt=await core.credentials.for_configure(),
                    journey_context=core.keeper.record.journey_context,
                )
                core.credentials.accepted()
                if self._done():
                    await core.link.close()
                    return
                await self._serve(configured)
            except SessionGone as exc:
                reason: EndReason = "closed_by_genesys"
                if exc.reason in ("expired", "conversation_lost"):
                    reason = "expired" if exc.reason == "expired" else "conversation_lost"
                await core.finish(reason, detail=str(exc))
                return
            except GenesysAuthFailed as exc:
                core.metrics.genesys_errors.labels(code=str(exc.code)).inc()
                await core.end_refused("auth_failed", exc)
                return
            except GenesysRejected as exc:
                core.metrics.genesys_errors.labels(code=str(exc.code)).inc()
                authenticated = core.credentials.authenticated
                if authenticated and exc.code == UNAUTHORIZED:
                    core.credentials.refused()  # §4.2: renew the JWT and configure again (bounded)
                else:
                    refused = refuses_authentication(exc.code, authenticated=authenticated)
                    ending: EndReason = "auth_failed" if refused else "rejected_by_genesys"
                    await core.end_refused(ending, exc)
                    return
            except GenesysRateLimited as exc:  # 429 on configureSession (§8: 60/min per session)
                core.metrics.rate_limit.delayed("configure", exc.retry_after_s)
                wait_at_least = exc.retry_after_s
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                log.info("genesys_socket_lost", error=str(exc))
            if self._done():
                return
            stop_if_asked()  # cancelled by an aborting TaskGroup, and a call turned the cancel into a socket error
            # Socket lost (or an unanswered ping or echo closed it): reconnect with jittered backoff (§6).
            core.gate.close()
            await core.link.close()  # idempotent: the socket may still be open (e.g. history failed), never leak it
            core.link.connection_lost()
            core.link.fail_all(GenesysUnavailable("socket lost"))
            if core.ending:  # the end in progress settles itself; Genesys closes the socket after Clear
                return
            if core.state is not SessionState.RECONNECTING:
                await core.set_state(SessionTrigger.SOCKET_LOST)
            now = core.deps.clock.monotonic()
            if self._outage_since is None or self._delays is None:
                self._outage_since, self._delays = now, core.deps.backoff()
            if now - self._outage_since > s.reconnect_give_up_s:
                await core.finish("failed", trigger=SessionTrigger.FAIL, detail="Genesys unreachable; gave up")
                return
            core.metrics.reconnects.labels(target="genesys").inc()
            await self._interruptible_wait(max(next(self._delays), wait_at_least))

    async def _serve(self, configured: Configured) -> None:
        """Pump this socket while the start or resume work (getJwt, history) runs beside it: the replies
        to that work arrive through the pump. Returns when the socket closes by our hand; raises the
        (first) error otherwise, unwrapped from the TaskGroup's group."""
        if self._configured_once or self._cause == "restart":
            # A resume: hold live messages until the backfill is published (§4.1, §9), from the first frame.
            self._inbound.hold()
        try:
            async with TaskGroup() as tg:
                self._inbound.serve_in(tg)
                tg.create_task(self._configured(configured))
                refresher = (
                    tg.create_task(self._core.credentials.keep_fresh())
                    if self._core.credentials.authenticated
                    else None
                )
                await self._core.link.pump(self._inbound.on_event)
                if refresher is not None:
                    refresher.cancel()  # the socket is gone: the next configure renews the JWT if it is due
        except BaseExceptionGroup as group:
            raise _first_leaf(group) from group
        finally:
            self._inbound.discard_held()  # released already, unless the catch-up did not complete

    def _done(self) -> bool:
        """The session is over or the bridge is stopping: no (re)connect. A call, so mypy does not narrow it."""
        return self._core.gate.over or self._stopping

    async def _configured(self, configured: Configured) -> None:
        """Handle a ``SessionResponse``: start, resume (with backfill) or the end it implies."""
        core = self._core
        first = not self._configured_once
        self._configured_once = True
        resumed = not first or self._cause == "restart"
        # A start never announced (its owner stopped, or the socket dropped, between journalling the session
        # and publishing session.started): this configure finishes that start. Genesys may never have seen
        # it, so a new session is no loss.
        unannounced = core.keeper.record.unannounced_start if resumed else None
        if first:
            core.new_session = configured.new_session
        if resumed and configured.new_session and unannounced is None:  # the old session is gone: say so (§4.1)
            # Genesys answers an expired token with a fresh session too (§4.1); only the expiry we kept tells
            # the two apart, so a session past its known expiry ended by expiry, anything else was lost.
            if core.keeper.expired_by_now():
                await core.finish("expired", detail="the session expired while it was disconnected")
            else:
                await core.finish("conversation_lost", detail="Genesys answered newSession:true on resume")
            return
        core.keeper.note_configured(ttl_s=configured.duration_s, expires_at=configured.expires_at)
        if configured.read_only:
            if resumed:  # the agent ended it while we were away: what they wrote last is still published
                await self._inbound.final_history_check()
            await core.finish("read_only", detail="SessionResponse readOnly")
            return
        await core.set_state(SessionTrigger.CONFIGURED)
        if unannounced is not None:
            # The start's own new_session, which the redelivered start's autostart goes by too.
            core.new_session = configured.new_session or unannounced == "new"
            await self._publish_started(core.events, configured, new_session=core.new_session)
        if resumed:
            # Then what the agent said meanwhile; no session.resumed for a session the integrator never saw start.
            await self._inbound.catch_up("reconnect" if not first else "restart", announce=unannounced is None)
            if core.gate.over or self._inbound.disconnecting:
                return
            self._report_recovery("resumed")
        else:
            await self._publish_started(core.events, configured, new_session=configured.new_session)
        self._outage_since, self._delays = None, None  # caught up: the next outage starts a fresh backoff
        core.note_agent_activity()  # the idle timeout counts live time only: it starts again from here
        core.gate.open(core.deps.clock.monotonic())

    async def _publish_started(self, events: SessionEvents, configured: Configured, *, new_session: bool) -> None:
        keeper = self._core.keeper
        record = keeper.record
        await events.publish(
            SessionStarted(
                **await events.stamp(),
                deployment_id=record.deployment_id,
                region=record.region,
                new_session=new_session,
                read_only=configured.read_only,
                expires_at=configured.expires_at,
                features=self._core.contract_features(),
            )
        )
        keeper.note_announced()

    async def _idle_loop(self, timeout_s: float) -> None:
        """End the session ``idle`` once the agent side was silent for ``timeout_s`` (messages, typing, presence).

        With the deployment's Disconnect off (Genesys' default) an agent's end is never announced; this is
        what keeps such a session from holding its socket until Genesys' TTL. The conversation is left to the
        agent: no Clear, the socket is closed and the token forgotten.
        """
        core = self._core
        clock = core.deps.clock
        # A deadline that moves with every agent event: re-read it after each sleep rather than wake per event.
        # It counts only while the session is live: a wait for a connect slot or a reconnect starts it again.
        while True:
            remaining = core.last_agent_activity + timeout_s - clock.monotonic()
            if remaining <= 0 and core.gate.ready:
                break
            if remaining <= 0:
                core.note_agent_activity()
                remaining = timeout_s
            await asyncio.sleep(remaining)
        self._idle_ending = True
        await core.finish(
            "idle", detail=f"no agent activity for {timeout_s:g}s; the socket is closed, the conversation left open"
        )


def _first_leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside ``exc`` (a TaskGroup wraps what its tasks raised)."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
