"""Composition root and supervisor: the only module that builds the real seams and wires them.

Start-up order (each step fails the start with a clear message and ``EXIT_STARTUP`` / ``EXIT_CONFIG``):

1. keys for the session journal (a missing or malformed key is a config error, before any connection);
2. the publisher's broker connection (own connection, confirms);
3. the journal: replay to the boot marker, then resume every live session (paced, §8 limits);
4. the intake (own connection): commands queued during the outage now flow, in order; a command for a
   session still resuming waits in that session's inbox until its history is caught up;
5. ``/readyz`` turns true once the broker is connected, the intake consumes and recovery has finished:
   every resumed session is caught up (``session.resumed``) or ended (:mod:`bridge.recovery`).

SIGTERM (docs/rabbitmq.md, "Shutdown"): stop the intake, let in-flight commands settle, close sockets without ending
sessions (never ``closeSession``), flush the journal and the publisher's confirms, exit 0 within
``drain_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import stamina
import structlog

from bridge.amqp.connection import BrokerLinks
from bridge.amqp.consumer import CommandIntake
from bridge.amqp.journal import open_stream_journal
from bridge.amqp.publisher import AmqpEventPublisher
from bridge.config import Settings
from bridge.errors import EXIT_CONFIG, EXIT_OK, EXIT_STARTUP, BridgeError, ConfigError, StateKeyError
from bridge.eventloop import loop_name
from bridge.genesys.connector import WebsocketsConnector
from bridge.genesys.deployment_config import DeploymentConfigs
from bridge.genesys.fetch_policy import FetchPolicy
from bridge.genesys.rest import GenesysRest
from bridge.genesys.urls import endpoints_for
from bridge.observability.admin import AdminServer
from bridge.observability.http import ObservabilityServer
from bridge.observability.metrics import Metrics
from bridge.observability.tracing import NO_TRACER, Tracer
from bridge.ports import Clock, Connector, LoopClock
from bridge.session.registry import SessionRegistry
from bridge.store import JournalStore, load_keys

__all__ = ["GC_THRESHOLDS", "Bridge", "Readiness", "run_daemon", "running_bridge", "tune_gc", "warn_unknown_settings"]

log = structlog.get_logger(__name__)


@dataclass
class Readiness:
    """What ``/readyz`` reports: broker connected, intake consuming, recovery done, not draining."""

    publisher: AmqpEventPublisher
    intake: CommandIntake
    recovering: bool = True
    draining: bool = False

    def __call__(self) -> tuple[bool, Mapping[str, object]]:
        reasons: list[str] = []
        if not self.publisher.connected:
            reasons.append("publisher not connected to the broker")
        if not self.intake.consuming:
            reasons.append("intake not consuming")
        if self.recovering:
            reasons.append("recovering sessions")
        if self.draining:
            reasons.append("draining")
        return (not reasons, {"reasons": reasons})


@dataclass
class Bridge:
    """The running parts of one bridge process, for probes, tests and the demo."""

    settings: Settings
    metrics: Metrics
    publisher: AmqpEventPublisher
    registry: SessionRegistry
    intake: CommandIntake
    http: ObservabilityServer
    readiness: Readiness
    store: JournalStore | None = None
    #: The read-only admin endpoint, when ``admin_port`` is set.
    admin: AdminServer | None = None
    #: Set once every session resumed at start was carried on or ended (``/readyz`` turns true then).
    recovered: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def _journal(
    settings: Settings, metrics: Metrics, clock: Clock, *, connection_name: str
) -> AsyncIterator[JournalStore | None]:
    if not settings.durable_sessions:
        log.warning("durable_sessions_off", detail="sessions will not survive a restart")
        yield None
        return
    keys = load_keys(settings)  # before any connection: a bad key is a config error
    async with open_stream_journal(settings, connection_name=connection_name) as journal_log:
        store = JournalStore(journal_log, keys, metrics=metrics, clock=clock)
        try:
            yield store
        finally:
            await store.flush()


async def _recovered(bridge: Bridge) -> None:
    """Readiness waits for recovery: every resumed session is caught up (``session.resumed``) or ended."""
    await bridge.registry.recovered()
    bridge.readiness.recovering = False
    # intake.start() returns before the consumer is registered; the log line promises a true /readyz.
    await bridge.intake.wait_consuming()
    bridge.recovered.set()
    bridge.registry.recovery.log_finished()


#: After a failed re-journal, try again this soon rather than a whole interval later.
REJOURNAL_RETRY_S = 60.0


async def _rejournal_forever(store: JournalStore, interval_s: float) -> None:
    """Re-write live sessions so stream retention by age never drops one that is still open (§5).

    A failed pass (broker or journal trouble) is logged and retried soon; it never stops the daemon, whose
    sessions are fine: the next pass writes whatever this one could not.
    """
    wait_s = interval_s
    while True:
        await asyncio.sleep(wait_s)
        try:
            written = await store.rejournal(older_than_s=interval_s)
        except BridgeError as exc:
            log.error("sessions_rejournal_failed", error=str(exc), error_type=type(exc).__name__)
            wait_s = min(interval_s, REJOURNAL_RETRY_S)
            continue
        log.info("sessions_rejournalled", count=written)
        wait_s = interval_s


@contextlib.asynccontextmanager
async def running_bridge(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    connector: Connector | None = None,
    clock: Clock | None = None,
    connection_name: str = "genesys-bridge",
    tracer: Tracer = NO_TRACER,
) -> AsyncIterator[Bridge]:
    """Start every part of the bridge; on exit, drain as on SIGTERM.

    The caller owns the context: leaving it (normally or by cancellation) stops intake, settles in-flight
    commands within ``drain_timeout_s``, closes sockets without ending sessions and flushes confirms.
    ``connection_name`` prefixes the broker connections' names (``<name>.publisher``, ``<name>.intake``,
    ``<name>.journal``), as ``rabbitmqctl list_connections client_properties`` shows them.

    Raises:
        ConfigError, StateKeyError: invalid settings or keys.
        BridgeError: a dependency could not be reached or declared within ``startup_timeout_s``.
    """
    metrics = metrics or Metrics()
    # Capacity alerts divide live sessions by this (a new session past it is rejected too_many_sessions).
    metrics.session_limit.set(settings.max_sessions)
    clock = clock or LoopClock()
    # stamina would register a Prometheus counter on the *global* registry; our retries are counted in
    # Metrics.reconnects on the injected registry instead, and logged by the callers.
    stamina.instrumentation.set_on_retry_hooks([])
    rest = GenesysRest(
        fetch_policy=FetchPolicy.of(
            allow_private=settings.attachment_fetch_allow_private, hosts=settings.attachment_fetch_hosts
        )
    )
    links = BrokerLinks(metrics)  # one view of broker health for both connections (readiness, metrics)
    publisher = AmqpEventPublisher(settings, metrics, links=links, connection_name=f"{connection_name}.publisher")
    override = str(settings.genesys_base_url) if settings.genesys_base_url else None
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(rest.aclose)
        async with asyncio.timeout(settings.startup_timeout_s):
            store = await stack.enter_async_context(
                _journal(settings, metrics, clock, connection_name=f"{connection_name}.journal")
            )
            await publisher.start()
            stack.push_async_callback(publisher.close, settings.drain_timeout_s)
            await publisher.wait_connected()
            live = await store.load_live() if store is not None else []
        registry = SessionRegistry(
            settings=settings,
            sink=publisher,
            connector=connector or WebsocketsConnector.from_settings(settings),
            endpoints=partial(endpoints_for, override=override),
            history=rest,
            uploads=rest,
            auth=rest,
            metrics=metrics,
            clock=clock,
            store=store,
            features=DeploymentConfigs.from_settings(
                settings, fetch=rest.fetch_deployment_config, clock=clock.monotonic
            ),
            tracer=tracer,
        )
        intake = CommandIntake(
            settings,
            metrics,
            handler=registry,
            sink=publisher,
            dead_letters=publisher,
            clock=clock,
            links=links,
            connection_name=f"{connection_name}.intake",
        )
        readiness = Readiness(publisher, intake)
        http = ObservabilityServer(settings.http_host, settings.http_port, metrics, ready=readiness)
        bridge = Bridge(settings, metrics, publisher, registry, intake, http, readiness, store=store)
        await bridge.http.start()
        stack.push_async_callback(bridge.http.stop)
        if settings.admin_port is not None:
            bridge.admin = AdminServer(settings.admin_host, settings.admin_port, registry, token=settings.admin_token)
            await bridge.admin.start()
            stack.push_async_callback(bridge.admin.stop)
            log.info(
                "admin_endpoint_started",
                host=settings.admin_host,
                port=bridge.admin.port,
                token_required=settings.admin_token is not None,
            )

        await stack.enter_async_context(registry)
        async with asyncio.TaskGroup() as tasks:
            # Sessions whose newest record is live; load_live() already dropped closed ones.
            log.info("recovery_started", sessions=len(live), resume_rate_per_s=settings.resume_rate_per_s)
            # Every session must exist in the registry before the intake starts: a command for a session
            # not yet spawned would be rejected as unknown_session (and dead-lettered).
            await registry.resume(live)
            await intake.start()
            log.info(
                "bridge_started",
                sessions_resumed=registry.recovery.total,
                http_port=bridge.http.port,
                event_loop=loop_name(asyncio.get_running_loop()),
            )
            recovered = tasks.create_task(_recovered(bridge), name="recovery-watch")
            rejournal = (
                tasks.create_task(_rejournal_forever(store, settings.rejournal_interval_s), name="rejournal")
                if store is not None
                else None
            )
            try:
                yield bridge
            finally:
                readiness.draining = True
                log.info("drain_started", timeout_s=settings.drain_timeout_s)
                recovered.cancel()
                if rejournal is not None:
                    rejournal.cancel()
                await intake.stop_intake()
                await registry.drain(settings.drain_timeout_s)
                await intake.close()
                log.info("drain_finished")


def _unwrap(exc: BaseException) -> BaseException:
    """The single error inside (nested) exception groups of one member each, else ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _nothing() -> None:
    return None


#: The cyclic garbage collector's thresholds once the daemon is up (Python's default: 700, 10, 10).
#: Almost everything a bridge allocates dies by reference counting (events, frames, log records); the
#: collector is only for cycles. With the default 700, a generation-0 collection runs every 700 net
#: container allocations, a few per command, and the older generations, which hold every session's
#: long-lived objects, are rescanned often enough to show up as self time in allocation-only frames of
#: the opening profile (docs/performance.md). 50,000 makes young collections about 70 times rarer; 20 and
#: 20 keep the older generations at about the same multiple of the young ones as the default. Cycles
#: still get collected, only in larger batches (a few MiB at most).
GC_THRESHOLDS: Final = (50_000, 20, 20)


def tune_gc() -> None:
    """At start-up, before any session exists: move everything alive now (modules, settings) out of the
    collector's sight for good (``gc.freeze``), and collect the young generation less often
    (:data:`GC_THRESHOLDS`). Sessions are never frozen: a frozen object in a cycle is never collected, so a
    session frozen once would leak when it ends. Process-wide, so only :func:`run_daemon` calls it, never
    ``running_bridge`` (tests and the demo run bridges inside other processes)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    log.info("gc_tuned", frozen_objects=gc.get_freeze_count(), thresholds=list(gc.get_threshold()))


def warn_unknown_settings(unknowns: Iterable[tuple[str, str | None]]) -> None:
    """Log one ``unknown_setting`` warning per ``(name, closest known name or None)``.

    ``unknowns`` is what :func:`bridge.config.unknown_variables` finds. The caller configures logging first.
    A warning, never an error: a misspelt variable is most likely a setting left at its default, which the
    operator should hear about, but a bridge that validates must still start.
    """
    for name, closest in unknowns:
        log.warning("unknown_setting", name=name, closest=closest)


async def run_daemon(settings: Settings, *, stop: asyncio.Event | None = None) -> int:
    """Run the bridge until SIGTERM/SIGINT (or ``stop`` is set), drain, and return the exit code."""
    tracer, stop_tracing = NO_TRACER, _nothing
    if settings.otel_enabled:
        try:
            from bridge.observability.otel import start_tracing  # the optional extra: imported only when asked
        except ImportError as missing:
            error = f"BRIDGE_OTEL_ENABLED needs the otel extra: pip install 'genesys-bridge[otel]' ({missing})"
            log.error("startup_failed", error=error, kind="ConfigError")
            return EXIT_CONFIG
        tracer, stop_tracing = start_tracing()
    tune_gc()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_bridge(settings, tracer=tracer):
            await stop.wait()
            log.info("stop_requested")
    except Exception as raised:
        # A component's TaskGroup wraps its failure (e.g. the publisher's refused login) in a group.
        exc = _unwrap(raised)
        if isinstance(exc, ConfigError | StateKeyError):
            # A missing, malformed or wrong state key is a configuration problem, like any bad setting.
            log.error("startup_failed", error=str(exc), kind=type(exc).__name__)
            return EXIT_CONFIG
        if isinstance(exc, BridgeError | TimeoutError):
            log.error("startup_failed", error=str(exc) or "timed out", kind=type(exc).__name__)
            return EXIT_STARTUP
        raise
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        stop_tracing()  # flushes the spans still batched
    log.info("bridge_stopped")
    return EXIT_OK
