"""Composition root and supervisor: the only module that builds the real seams and wires them.

Start-up order (each step fails the start with a clear message and ``EXIT_STARTUP`` / ``EXIT_CONFIG``):

1. keys for the session journal (a missing or malformed key is a config error, before any connection);
2. the publisher's broker connection (own connection, confirms);
3. the partition layout: a partition count other than the broker's queues were made with is refused;
4. one consumer per partition queue (own connection each), then the router's consumer on the intake
   queue, then presence and probes (:mod:`bridge.partition.fleet`). The broker makes one consumer of each
   queue active; a replica that becomes a partition's owner replays the partition's journal stream and
   resumes its sessions (paced, §8 limits) before it serves the partition's commands;
5. ``/readyz`` turns true once the broker is connected and every consumer is registered: a replica that
   owns no partition yet is a ready standby. ``Bridge.recovered`` is set the first time every partition
   is owned by this replica and recovered (the single-replica case).

SIGTERM (docs/rabbitmq.md, "Shutdown"; docs/scaling.md): leave the fleet, stop routing, then fence every
owned partition: in-flight commands settle, sockets close without ending sessions (never ``closeSession``),
the journal is flushed, and only then is the consumer cancelled, so the next owner starts after this one
stopped. Exit 0 within ``drain_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import signal
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import stamina
import structlog

from bridge.amqp.connection import BrokerLinks, ReopeningConnection
from bridge.amqp.consumer import CommandIntake
from bridge.amqp.forwarder import QueueForwarder
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
from bridge.partition.fleet import Fleet, Partition, check_layout
from bridge.partition.journals import StreamJournals
from bridge.partition.layout import partition_of, partition_queue
from bridge.partition.owner import PartitionOwner
from bridge.partition.router import PartitionRouter, observe_lag
from bridge.ports import Clock, Connector, LoopClock
from bridge.session.actor import SessionActor
from bridge.session.registry import Census, SessionRegistry, session_deps
from bridge.session.view import SessionView
from bridge.store import JournalStore, load_keys
from bridge.tasks import TaskGroup, each_to_its_end, stop_if_asked

__all__ = [
    "GC_THRESHOLDS",
    "Bridge",
    "Readiness",
    "Sessions",
    "run_daemon",
    "running_bridge",
    "tune_gc",
    "warn_unknown_settings",
]

log = structlog.get_logger(__name__)


@dataclass
class Readiness:
    """What ``/readyz`` reports: broker connected, every consumer registered, not draining."""

    publisher: AmqpEventPublisher
    intakes: Sequence[CommandIntake]
    draining: bool = False

    def __call__(self) -> tuple[bool, Mapping[str, object]]:
        reasons: list[str] = []
        if not self.publisher.connected:
            reasons.append("publisher not connected to the broker")
        idle = [intake.queue for intake in self.intakes if not intake.consuming]
        if idle:
            reasons.append(f"not consuming {', '.join(idle)}")
        if self.draining:
            reasons.append("draining")
        return (not reasons, {"reasons": reasons})


class Sessions:
    """The sessions this replica holds now, over every partition it owns (admin endpoint, tests, demo)."""

    def __init__(self, fleet: Fleet, partitions: int, *, replica: str) -> None:
        self._fleet = fleet
        self._partitions = partitions
        self._replica = replica

    def __len__(self) -> int:
        return sum(len(p.owner) for p in self._fleet.partitions)

    def get(self, session_id: str) -> SessionActor | None:
        """The session's actor, if its partition is owned here and the session is live."""
        registry = self._registry(partition_of(session_id, self._partitions))
        return registry.get(session_id) if registry is not None else None

    def describe(self, session_id: str) -> SessionView | None:
        """What the admin endpoint answers for the session (``None``: not held here), with its partition
        and this replica as its owner."""
        partition = partition_of(session_id, self._partitions)
        registry = self._registry(partition)
        view = registry.describe(session_id) if registry is not None else None
        return dataclasses.replace(view, partition=partition, owner=self._replica) if view is not None else None

    def _registry(self, partition: int) -> SessionRegistry | None:
        return self._fleet.partitions[partition].owner.registry


@dataclass
class Bridge:
    """The running parts of one bridge process, for probes, tests and the demo."""

    settings: Settings
    metrics: Metrics
    publisher: AmqpEventPublisher
    sessions: Sessions
    fleet: Fleet
    #: The router's consumer on the intake queue.
    intake: CommandIntake
    http: ObservabilityServer
    readiness: Readiness
    #: The read-only admin endpoint, when ``admin_port`` is set.
    admin: AdminServer | None = None
    #: Set the first time this replica owns every partition and has resumed all of their sessions (a lone
    #: replica's start-up recovery).
    recovered: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def intakes(self) -> list[CommandIntake]:
        """The partition queues' consumers, by partition."""
        return [p.intake for p in self.fleet.partitions]

    def journal(self, partition: int) -> JournalStore | None:
        """The journal of ``partition`` while it is owned here (and sessions are durable)."""
        journal = self.fleet.partitions[partition].owner.journal
        return journal if isinstance(journal, JournalStore) else None


async def _watch_recovered(bridge: Bridge) -> None:
    """Set ``bridge.recovered`` once every partition is owned here and recovered (a lone replica's start),
    and log ``recovery_finished`` with the sessions resumed and their results, summed over the partitions."""
    started = asyncio.get_running_loop().time()
    owners = [p.owner for p in bridge.fleet.partitions]
    while True:
        waiting = [o.next_change() for o in owners]  # before the check: no change goes unseen
        if all(o.owned and o.recovered for o in owners):
            break
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    bridge.recovered.set()
    results: Counter[str] = Counter()
    for owner in owners:
        if owner.registry is not None:
            results.update(owner.registry.recovery.results)
    log.info(
        "recovery_finished",
        sessions=results.total(),
        results=dict(results),
        duration_s=round(asyncio.get_running_loop().time() - started, 3),
    )


#: After a failed re-journal, try again this soon rather than a whole interval later.
REJOURNAL_RETRY_S = 60.0


async def _rejournal_forever(fleet: Fleet, interval_s: float) -> None:
    """Re-write live sessions so stream retention by age never drops one that is still open (§5).

    A failed pass (broker or journal trouble) is logged and retried soon; it never stops the daemon, whose
    sessions are fine: the next pass writes whatever this one could not.
    """
    wait_s = interval_s
    while True:
        stop_if_asked()  # a drain's cancel that a journal call turned into a result or an error of its own
        await asyncio.sleep(wait_s)
        written, wait_s = 0, interval_s
        for partition in fleet.owned():
            journal = partition.owner.journal
            if journal is None:
                continue
            try:
                written += await journal.rejournal(older_than_s=interval_s)
            except BridgeError as exc:
                stop_if_asked()
                log.error(
                    "sessions_rejournal_failed",
                    partition=partition.owner.index,
                    error=str(exc),
                    error_type=type(exc).__name__,
                )
                wait_s = min(interval_s, REJOURNAL_RETRY_S)
        log.info("sessions_rejournalled", count=written)


class _Fatal:
    """The first error no other replica could do better with (a state key that opens nothing: ``EXIT_CONFIG``;
    a journal stream that cannot be declared: ``EXIT_STARTUP``): it ends the daemon."""

    def __init__(self) -> None:
        self._error: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    def __call__(self, error: BaseException) -> None:
        if not self._error.done():
            self._error.set_result(error)

    async def raise_it(self) -> None:
        raise await self._error


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

    The caller owns the context: leaving it (normally or by cancellation) leaves the fleet, fences every
    owned partition within ``drain_timeout_s`` (in-flight commands settle, sockets close without ending
    sessions, the journal is flushed) and flushes confirms. ``connection_name`` prefixes the broker
    connections' names (``<name>.publisher``, ``<name>.intake`` for the router, ``<name>.p<N>`` per
    partition, ``<name>.router`` for probes and forwarding, ``<name>.journal``), as ``rabbitmqctl
    list_connections client_properties`` shows them.

    Raises:
        ConfigError, StateKeyError: invalid settings or keys, or a partition count the broker's queues were
            not made with.
        BridgeError: a dependency could not be reached or declared within ``startup_timeout_s``.
    """
    metrics = metrics or Metrics()
    # Capacity alerts divide live sessions by this (a new session past it is rejected too_many_sessions).
    metrics.session_limit.set(settings.max_sessions)
    metrics.partitions.set(settings.partitions)
    clock = clock or LoopClock()
    # stamina would register a Prometheus counter on the *global* registry; our retries are counted in
    # Metrics.reconnects on the injected registry instead, and logged by the callers.
    stamina.instrumentation.set_on_retry_hooks([])
    rest = GenesysRest(
        fetch_policy=FetchPolicy.of(
            allow_private=settings.attachment_fetch_allow_private, hosts=settings.attachment_fetch_hosts
        )
    )
    links = BrokerLinks(metrics)  # one view of broker health for every connection (readiness, metrics)
    publisher = AmqpEventPublisher(settings, metrics, links=links, connection_name=f"{connection_name}.publisher")
    override = str(settings.genesys_base_url) if settings.genesys_base_url else None
    if not settings.durable_sessions:
        log.warning("durable_sessions_off", detail="sessions will not survive a restart")
    keys = load_keys(settings) if settings.durable_sessions else None  # before any connection
    fatal = _Fatal()
    replica = settings.replica_name or f"{connection_name}@{socket.gethostname()}"
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(rest.aclose)
        routing = ReopeningConnection(settings, name=f"{connection_name}.router", clock=clock)
        stack.push_async_callback(routing.close)
        forwarder = QueueForwarder(routing, confirm_timeout_s=settings.publish_timeout_s)
        stack.push_async_callback(forwarder.close)
        async with asyncio.timeout(settings.startup_timeout_s):
            await publisher.start()
            stack.push_async_callback(publisher.close, settings.drain_timeout_s)
            await publisher.wait_connected()
            await check_layout(forwarder, intake_queue=settings.intake_queue, partitions=settings.partitions)
        journals = (
            await stack.enter_async_context(
                StreamJournals(
                    settings, keys, metrics=metrics, clock=clock, connection_name=f"{connection_name}.journal"
                )
            )
            if keys is not None
            else None
        )
        deps = session_deps(
            settings=settings,
            sink=publisher,
            connector=connector or WebsocketsConnector.from_settings(settings),
            endpoints=partial(endpoints_for, override=override),
            history=rest,
            uploads=rest,
            auth=rest,
            metrics=metrics,
            clock=clock,
            features=DeploymentConfigs.from_settings(
                settings, fetch=rest.fetch_deployment_config, clock=clock.monotonic
            ),
            tracer=tracer,
        )
        copier = await stack.enter_async_context(
            PartitionRouter(
                forwarder, intake_queue=settings.intake_queue, partitions=settings.partitions, metrics=metrics
            )
        )
        router = CommandIntake(
            settings,
            metrics,
            handler=copier,
            sink=publisher,
            dead_letters=publisher,
            clock=clock,
            links=links,
            connection_name=f"{connection_name}.intake",
            on_probe=partial(observe_lag, metrics),
            settle=copier.drain,
        )
        fleet = Fleet(
            forwarder,
            settings=settings,
            intake_queue=settings.intake_queue,
            router=router,
            window=deps.connects,
            metrics=metrics,
            replica=replica,
            clock=clock,
        )
        census = Census()
        for index in range(settings.partitions):
            owner = PartitionOwner(
                index,
                settings=settings,
                deps=deps,
                census=census,
                journals=journals,
                metrics=metrics,
                accept=fleet.accept,
                on_fatal=fatal,
            )
            intake = CommandIntake(
                settings,
                metrics,
                handler=owner,
                sink=publisher,
                dead_letters=publisher,
                clock=clock,
                links=links,
                connection_name=f"{connection_name}.p{index}",
                queue=partition_queue(settings.intake_queue, index),
                tenure=owner,
            )
            fleet.add(Partition(owner, intake))
        sessions = Sessions(fleet, settings.partitions, replica=replica)
        readiness = Readiness(publisher, [router, *(p.intake for p in fleet.partitions)])
        http = ObservabilityServer(settings.http_host, settings.http_port, metrics, ready=readiness)
        bridge = Bridge(settings, metrics, publisher, sessions, fleet, router, http, readiness)
        await bridge.http.start()
        stack.push_async_callback(bridge.http.stop)
        if settings.admin_port is not None:
            bridge.admin = AdminServer(settings.admin_host, settings.admin_port, sessions, token=settings.admin_token)
            await bridge.admin.start()
            stack.push_async_callback(bridge.admin.stop)
            log.info(
                "admin_endpoint_started",
                host=settings.admin_host,
                port=bridge.admin.port,
                token_required=settings.admin_token is not None,
            )

        intakes = [*bridge.intakes, router]
        for intake in intakes:
            stack.push_async_callback(intake.close)
        async with TaskGroup() as tasks:
            fatal_watch = tasks.create_task(fatal.raise_it(), name="fatal-watch")
            async with asyncio.timeout(settings.startup_timeout_s):
                # Partitions first: a replica stands in line for them before it routes or is counted.
                await asyncio.gather(*(intake.start() for intake in intakes))
                await asyncio.gather(*(intake.wait_consuming() for intake in intakes))
            fleet_task = tasks.create_task(fleet.run(), name="fleet")
            watch = tasks.create_task(_watch_recovered(bridge), name="recovery-watch")
            rejournal = (
                tasks.create_task(_rejournal_forever(fleet, settings.rejournal_interval_s), name="rejournal")
                if journals is not None
                else None
            )
            log.info(
                "bridge_started",
                partitions=settings.partitions,
                http_port=bridge.http.port,
                event_loop=loop_name(asyncio.get_running_loop()),
            )
            try:
                yield bridge
            finally:
                readiness.draining = True
                log.info("drain_started", timeout_s=settings.drain_timeout_s, partitions_owned=len(fleet.owned()))
                watch.cancel()
                fleet_task.cancel()
                if rejournal is not None:
                    rejournal.cancel()
                with contextlib.suppress(BridgeError):
                    await fleet.leave()
                await router.stop_intake()  # the router's last copies land and are acked first
                # Every owned partition fences (settles, closes its sockets, flushes) before its consumer goes.
                await each_to_its_end(*(p.intake.stop_intake() for p in fleet.partitions))
                await each_to_its_end(*(intake.close() for intake in intakes))
                fatal_watch.cancel()
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
        replica = settings.replica_name or socket.gethostname()
        async with running_bridge(settings, tracer=tracer, connection_name=f"genesys-bridge.{replica}"):
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
