"""The session registry: the command handler the AMQP intake hands every envelope to.

:meth:`SessionRegistry.submit` is fast and never waits for a busy session: it answers duplicates from
the idempotency cache, creates sessions for ``session.start`` (after the allow-list, region and capacity
checks), and otherwise puts the envelope in its session's bounded inbox. Overflow policy: a full inbox
(``inbox_size``) or a command that waited longer than ``inbox_max_age_s`` gets ``rejected``/``overflow``
and is acked, so one slow session cannot hold the shared prefetch window for ever (docs/sessions.md).

Every actor runs inside the registry's TaskGroup; use the registry as an async context manager::

    async with SessionRegistry(...) as registry:
        ...  # the intake calls registry.submit(envelope)
        await registry.drain(settings.drain_timeout_s)
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

import structlog
from pydantic import SecretStr

from bridge.config import Settings
from bridge.contract.outcomes import SettledOutcome, event_stamp
from bridge.errors import CommandRejected
from bridge.genesys.actions import journey_context_of
from bridge.observability.metrics import Metrics
from bridge.observability.tracing import NO_TRACER, Tracer
from bridge.ports import Clock, Connector, Envelope, EventSink, LoopClock, SessionStore
from bridge.record import SessionRecord
from bridge.recovery import RecoveryProgress
from bridge.session.actor import SessionActor
from bridge.session.flow import ConnectPacer, ConnectWindow, Offer
from bridge.session.heartbeat import Heartbeat
from bridge.session.outcomes import OutcomeBook, rejected_reason
from bridge.session.ports import (
    AuthClient,
    Backoff,
    EndpointResolver,
    FeatureSource,
    HistoryClient,
    SessionDeps,
    UploadClient,
    jittered_backoff,
    spread_phase,
)
from bridge.session.view import SessionView
from bridge.tasks import TaskGroup
from genesys_bridge_client.contract import SessionStart
from genesys_bridge_client.contract.events import OutcomeReason, OutcomeStatus

__all__ = ["CANCEL_GRACE_S", "Census", "SessionRegistry", "session_deps"]

log = structlog.get_logger(__name__)

#: After the drain deadline cancels the remaining actors, how long their cleanup (requeue, socket close)
#: may take before the drain returns anyway.
CANCEL_GRACE_S = 5.0


@dataclass(slots=True)
class Census:
    """Live sessions of a process, over all its registries: what ``max_sessions`` limits."""

    live: int = 0


def session_deps(
    *,
    settings: Settings,
    sink: EventSink,
    connector: Connector,
    endpoints: EndpointResolver,
    history: HistoryClient,
    uploads: UploadClient,
    metrics: Metrics,
    clock: Clock | None = None,
    store: SessionStore | None = None,
    backoff: Backoff | None = None,
    features: FeatureSource | None = None,
    tracer: Tracer = NO_TRACER,
    auth: AuthClient | None = None,
    keepalive_phase: Callable[[float], float] | None = None,
) -> SessionDeps:
    """The seams every session of a process uses, with one idempotency cache, connect pacer and connect window.
    ``keepalive_phase`` draws each session's first ping and echo delay (default: uniform over the interval)."""
    clock = clock or LoopClock()
    return SessionDeps(
        settings=settings,
        connector=connector,
        sink=sink,
        clock=clock,
        metrics=metrics,
        history=history,
        uploads=uploads,
        endpoints=endpoints,
        backoff=backoff or jittered_backoff(settings.reconnect_initial_s, settings.reconnect_max_s),
        book=OutcomeBook(sink=sink, metrics=metrics, clock=clock, cache_size=settings.idempotency_cache_size),
        pacer=ConnectPacer(rate_per_s=settings.resume_rate_per_s, clock=clock),
        connects=ConnectWindow(limit=settings.genesys_connects_per_min, clock=clock),
        store=store,
        features=features,
        tracer=tracer,
        auth=auth,
        heartbeat=Heartbeat(),
        keepalive_phase=keepalive_phase or spread_phase,
    )


class SessionRegistry:
    """Owns session actors (every one of a process, or one partition's) and routes commands to them (the
    ``CommandHandler``). Build one with :func:`session_deps`: ``SessionRegistry(session_deps(...))``."""

    def __init__(self, deps: SessionDeps, *, census: Census | None = None) -> None:
        """``deps`` may be shared by several registries of one process (one per owned partition): then they
        share the idempotency cache, the connect pacing and window, and ``census``, the session limit."""
        self._settings = deps.settings
        self._clock = deps.clock
        self._metrics = deps.metrics
        self.book = deps.book
        self._deps = deps
        self._census = census if census is not None else Census()
        self._actors: dict[str, SessionActor] = {}
        self._recovery = RecoveryProgress(())  # nothing to recover until resume()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._all_done = asyncio.Event()
        self._all_done.set()
        self._tg: TaskGroup | None = None
        self._lifetime = contextlib.AsyncExitStack()
        self._draining = False

    # --- lifetime --------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        # The actors' TaskGroup lives as long as this context: entered through an exit stack, so its exit
        # sees the same exception the caller's ``async with`` does.
        self._tg = await self._lifetime.enter_async_context(TaskGroup())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._draining and exc_type is None:
            await self.drain(self._settings.drain_timeout_s)
        try:
            await self._lifetime.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None

    def __len__(self) -> int:
        return len(self._actors)

    def get(self, session_id: str) -> SessionActor | None:
        """The live actor of ``session_id``, if any (for tests and the HTTP status page)."""
        return self._actors.get(session_id)

    def describe(self, session_id: str) -> SessionView | None:
        """A read-only snapshot of ``session_id`` for operators (the admin endpoint), or None if it is not live.

        Cheap and synchronous: safe to call from any handler on the loop. The snapshot holds no secret.
        """
        actor = self._actors.get(session_id)
        if actor is None:
            return None
        connected_at = actor.connected_at
        connected_since = None
        if connected_at is not None:
            # The gate keeps loop time; an operator wants wall time: shift "now" back by the time since.
            ago_s = max(0.0, self._clock.monotonic() - connected_at)
            connected_since = self._clock.now() - timedelta(seconds=ago_s)
        return SessionView(
            session_id=actor.session_id,
            state=actor.state.value,
            seq=actor.seq,
            deployment_id=actor.deployment_id,
            connected_since=connected_since,
        )

    # --- intake ----------------------------------------------------------------------------------------

    async def submit(self, envelope: Envelope) -> None:
        """Route one command. Returns once it is queued or answered; never waits for a session's work.

        Never raises for one bad command: an unexpected error is logged and the command requeued (the
        queue's delivery limit dead-letters a command that keeps failing).
        """
        try:
            await self._route(envelope)
        except Exception:
            log.exception("command_routing_failed", command_id=envelope.command.command_id)
            await self.book.requeue(envelope)

    async def _route(self, envelope: Envelope) -> None:
        command = envelope.command
        if self._draining:
            await self.book.requeue(envelope)
            return
        match self.book.admit(envelope):
            case "replayed":
                await self.book.replay(envelope)
                return
            case "held":
                return
            case "new":
                pass
        actor = self._actors.get(command.session_id)
        settled = actor.settled(command.command_id) if actor is not None else None
        if settled is not None:
            # Not in this process's cache, but the session's record has it: settled by a previous process
            # whose ack never reached the broker. Answer it; never run it twice.
            await self._answer_settled(envelope, settled)
            return
        if isinstance(command, SessionStart):
            if actor is None:
                await self._start(envelope, command)
                return
            if actor.record.start_command_id != command.command_id:
                await self._reject(envelope, "session_exists", "a live session already has this session_id")
                return
            if actor.record.recent_outcomes.full:
                # Its outcome may have left the record's bounded tail: it settled long ago. Never run it twice.
                await self._answer(envelope, "delivered", "ok", "the session is live (resumed)")
                return
            # The start of a session resumed from the journal, redelivered: its previous owner stopped before
            # it settled (a settled one was answered above, and the tail has dropped nothing). The session runs
            # it as it resumes: the initial message goes out once (matched as a journalled send if it already
            # went), and the outcome follows.
        elif actor is None:
            await self._reject(envelope, "unknown_session", "no live session has this session_id")
            return
        match actor.offer(envelope):
            case Offer.ACCEPTED:
                self._metrics.inbox_depth.inc()
            case Offer.FULL:
                await self._reject(
                    envelope, "overflow", f"the session inbox is full ({self._settings.inbox_size} commands)"
                )
            case Offer.CLOSED if actor.stopping:
                await self.book.requeue(envelope)
            case Offer.CLOSED:
                await self._reject(envelope, "session_ended", "the session has ended")

    async def _start(self, envelope: Envelope, command: SessionStart) -> None:
        s = self._settings
        if s.allowed_deployments and command.deployment_id not in s.allowed_deployments:
            await self._reject(envelope, "deployment_not_allowed", f"deployment {command.deployment_id} is not allowed")
            return
        if self._census.live >= s.max_sessions:
            await self._reject(envelope, "too_many_sessions", f"{s.max_sessions} sessions are live")
            return
        now = self._clock.now()
        record = SessionRecord(
            session_id=command.session_id,
            token=SecretStr(command.resume_token or str(uuid.uuid4())),
            deployment_id=command.deployment_id,
            region=command.region,
            origin=command.origin,
            route=command.route,
            authenticated=command.auth is not None,
            journey_context=journey_context_of(command.journey_context) if command.journey_context else None,
            custom_attributes=dict(command.custom_attributes or {}),
            start_command_id=command.command_id,
            unannounced_start="adopted" if command.resume_token else "new",
            created_at=now,
            updated_at=now,
        )
        try:
            actor = SessionActor(record, self._deps, cause="start", grant=command.auth)
        except CommandRejected as exc:  # the endpoint resolver: unknown_region
            await self._reject(envelope, rejected_reason(exc.reason), exc.detail)
            return
        actor.offer(envelope)
        self._metrics.inbox_depth.inc()
        self._spawn(actor)

    def _spawn(self, actor: SessionActor) -> None:
        if self._tg is None:
            raise RuntimeError("use the SessionRegistry as an async context manager")
        self._actors[actor.session_id] = actor
        self._census.live += 1
        self._all_done.clear()
        self._tasks[actor.session_id] = self._tg.create_task(self._run(actor), name=f"session:{actor.session_id}")

    async def _run(self, actor: SessionActor) -> None:
        """One actor's task. Its failure is contained: logged and counted, never the registry's TaskGroup's
        (which would cancel every other session). ``CancelledError`` is not an ``Exception``: it propagates."""
        try:
            await actor.run()
        except Exception:
            log.exception("session_task_failed", session_id=actor.session_id)
            self._metrics.session_failures.labels(reason="crash").inc()
        finally:
            if self._actors.get(actor.session_id) is actor:
                del self._actors[actor.session_id]
                self._census.live -= 1
                self._tasks.pop(actor.session_id, None)
            self._recovery.settle(actor.session_id, "exited")  # if it never said: do not wait for it
            if not self._actors:
                self._all_done.set()

    async def _reject(self, envelope: Envelope, reason: OutcomeReason, detail: str) -> None:
        """Answer a command the registry refused: ``rejected`` outcome (seq 0), then dead-letter it."""
        log.info("command_rejected", session_id=envelope.command.session_id, reason=reason, detail=detail)
        await self._answer(envelope, "rejected", reason, detail)

    async def _answer_settled(self, envelope: Envelope, settled: SettledOutcome) -> None:
        """Answer a redelivered command with the outcome its session's record kept (seq 0, a replay)."""
        replay = settled.model_copy(update={"detail": "already settled before a restart; not run again"})
        outcome = replay.event(self._stamp(envelope))
        deployment_id, route = self._address_of(envelope)
        await self.book.answer_duplicate(envelope, outcome, deployment_id=deployment_id, route=route)

    def _address_of(self, envelope: Envelope) -> tuple[str | None, str | None]:
        """The deployment and owner route an outcome of ``envelope`` is routed by (None when unknown)."""
        command = envelope.command
        if isinstance(command, SessionStart):
            return command.deployment_id, command.route
        actor = self._actors.get(command.session_id)
        return (actor.deployment_id, actor.route) if actor is not None else (None, None)

    def _stamp(self, envelope: Envelope) -> dict[str, Any]:
        command = envelope.command
        # Outside any session's stream: seq 0 (the contract's "not part of a session" number).
        return event_stamp(session_id=command.session_id, seq=0, occurred_at=self._clock.now(), cause=command)

    async def _answer(
        self,
        envelope: Envelope,
        status: OutcomeStatus,
        reason: OutcomeReason,
        detail: str,
    ) -> None:
        """Settle a command at the registry level: an outcome outside any session (seq 0)."""
        outcome = SettledOutcome.of(envelope.command, status, reason, detail).event(self._stamp(envelope))
        deployment_id, route = self._address_of(envelope)
        await self.book.settle(envelope, outcome, deployment_id=deployment_id, route=route)

    # --- restart and shutdown --------------------------------------------------------------------------

    async def resume(self, records: Iterable[SessionRecord]) -> None:
        """Resume live sessions from a store after a restart.

        Every actor is registered at once, so commands for a resumed session queue in its inbox and run
        as soon as *it* is back; their first connects are paced at ``resume_rate_per_s`` (a shared
        :class:`ConnectPacer`). Each resumes with cause ``restart``: same token, ``startNew:false``,
        backfill, then ``session.resumed``. Closed records and sessions already live are skipped.
        """
        pending = [r for r in records if not r.closed and r.session_id not in self._actors]
        # The connects these sessions' previous owners made in the last minute still count (Genesys' limit
        # is per deployment, whoever connects): a crash loop cannot exceed it.
        now = self._clock.now().timestamp()
        for record in pending:
            ages = (now - t for t in record.recent_connects)
            self._deps.connects.restore(record.deployment_id, ages, session_id=record.session_id)
        self._recovery = RecoveryProgress(r.session_id for r in pending)
        self._metrics.recovery_pending.inc(len(pending))
        for record in pending:
            if self._draining:
                self._metrics.recovery_pending.dec()
                self._recovery.settle(record.session_id, "not_started")
                continue
            try:
                actor = SessionActor(record, self._deps, cause="restart", on_recovered=self._recovery.settle)
            except CommandRejected as exc:
                log.error("session_resume_failed", session_id=record.session_id, reason=exc.reason, detail=exc.detail)
                self._metrics.sessions_recovered.labels(result="failed").inc()
                self._metrics.recovery_pending.dec()
                self._recovery.settle(record.session_id, "not_started")
            else:
                self._spawn(actor)
                self._metrics.sessions_recovered.labels(result="started").inc()

    @property
    def recovery(self) -> RecoveryProgress:
        """The progress of the last :meth:`resume` (finished at once when there was nothing to resume)."""
        return self._recovery

    async def recovered(self) -> None:
        """Return once every session of :meth:`resume` is resumed and caught up, or ended."""
        await self._recovery.finished()

    async def drain(self, timeout_s: float) -> None:
        """SIGTERM: stop taking commands, let in-flight ones settle, close sockets without ending sessions.

        Unstarted commands are requeued, and so is a command waiting for a session that is reconnecting
        (a draining session does not reconnect). After ``timeout`` the remaining actors are cancelled (their
        in-flight command is requeued too); their cleanup gets :data:`CANCEL_GRACE_S` more, then the drain
        returns regardless (what is still unacked is redelivered by the broker anyway).
        """
        self._draining = True
        for actor in list(self._actors.values()):
            actor.stop()
        try:
            async with asyncio.timeout(timeout_s):
                await self._all_done.wait()
        except TimeoutError:
            log.warning("drain_timeout", sessions=len(self._actors))
            for task in list(self._tasks.values()):
                task.cancel()
            try:
                async with asyncio.timeout(CANCEL_GRACE_S):
                    await self._all_done.wait()
            except TimeoutError:
                log.error("drain_cancel_unfinished", sessions=len(self._actors))
                for task in list(self._tasks.values()):
                    task.cancel()  # once more: their cleanup is stuck in an await
