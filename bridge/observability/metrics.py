"""Every metric the bridge exports, declared in one container on an injected registry.

Names carry the ``genesys_bridge_`` prefix. No label ever holds a session id (unbounded cardinality);
labels are closed vocabularies (command type, outcome status and reason, Genesys code, state). Where a
label's values come from code paths spread over the bridge, a typed method takes them (``Literal`` types,
checked by mypy) instead of a bare ``labels(...)`` call, so the vocabulary is stated in one place.
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

import bridge
from genesys_bridge_client.contract.events import OUTCOME_REASONS, OutcomeReason, OutcomeStatus

__all__ = [
    "COMMAND_METRIC_STATUSES",
    "RATE_LIMIT_DELAY_KINDS",
    "RATE_LIMIT_DROP_KINDS",
    "CommandMetricStatus",
    "CommandMetrics",
    "Metrics",
    "RateLimitDelayKind",
    "RateLimitDropKind",
    "RateLimitMetrics",
]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# One broker or Genesys round trip: typically under a millisecond on a quiet network, so finer at the bottom.
_ROUND_TRIP_BUCKETS = (0.00025, 0.0005, *_LATENCY_BUCKETS)
# Rate-limit delays run from milliseconds (the send budget) to a minute (the per-minute connect window).
_DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

#: The ``status`` label of ``genesys_bridge_commands_total``: the outcome statuses, plus ``duplicate`` for a
#: repeated ``command_id`` answered with the outcome settled before (its ``reason`` is that outcome's).
CommandMetricStatus = OutcomeStatus | Literal["duplicate"]
COMMAND_METRIC_STATUSES: tuple[str, ...] = (*OutcomeStatus.__args__, "duplicate")  # type: ignore[attr-defined]

#: Why a send waited (``genesys_bridge_rate_limit_delay_seconds{kind}``):
#: ``message`` the session's own send budget; ``genesys`` a Genesys 429 on a message (its ``retryAfter``);
#: ``connect`` the per-deployment connection window; ``configure`` a 429 on configureSession;
#: ``history`` a 429 on a history page during backfill.
RateLimitDelayKind = Literal["message", "genesys", "connect", "configure", "history"]
RATE_LIMIT_DELAY_KINDS: tuple[str, ...] = RateLimitDelayKind.__args__  # type: ignore[attr-defined]

#: What a rate limit made the bridge give up (``genesys_bridge_rate_limit_drops_total{kind}``):
#: ``typing`` a typing indicator dropped because the send budget was spent; ``message`` a message failed
#: ``rate_limited`` after Genesys kept answering 429; ``history`` a backfill given up after repeated 429s.
RateLimitDropKind = Literal["typing", "message", "history"]
RATE_LIMIT_DROP_KINDS: tuple[str, ...] = RateLimitDropKind.__args__  # type: ignore[attr-defined]


class CommandMetrics:
    """``genesys_bridge_commands_total{type, status, reason}``: every settled command, counted once."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.counter = Counter(
            prefix + "commands",
            "Commands settled, by type, outcome status and reason.",
            ["type", "status", "reason"],
            registry=registry,
        )

    def settled(self, command_type: str, status: CommandMetricStatus, reason: OutcomeReason) -> None:
        """Count one settled command.

        The caller passes a bounded ``command_type`` (a contract type, or ``unknown`` for a rejected body:
        ``bridge.contract.outcomes.command_type_label``) and the outcome's own status and reason; for a
        duplicate, ``status="duplicate"`` and the reason of the outcome it repeats.
        """
        # mypy checks the callers; a string that slipped past the types (a cast, an untyped body) must not
        # open the label set, and counting must never fail a settlement, so it is folded, not raised.
        if reason not in OUTCOME_REASONS:
            reason = "internal_error"
        if status not in COMMAND_METRIC_STATUSES:
            status = "failed"
        self.counter.labels(type=command_type, status=status, reason=reason).inc()


class RateLimitMetrics:
    """Rate limits as two metrics: how long sends were delayed, and what was given up, both by kind."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.delay_seconds = Histogram(
            prefix + "rate_limit_delay_seconds",
            "Time a send, connect or history fetch waited for a rate limit, by kind.",
            ["kind"],
            buckets=_DELAY_BUCKETS,
            registry=registry,
        )
        self.drops = Counter(
            prefix + "rate_limit_drops",
            "Typing indicators, messages or backfills given up because of a rate limit, by kind.",
            ["kind"],
            registry=registry,
        )

    def delayed(self, kind: RateLimitDelayKind, seconds: float) -> None:
        """Record one wait of ``seconds`` (the delay the limit imposed, as the caller knows it)."""
        self.delay_seconds.labels(kind=kind).observe(max(0.0, seconds))

    def dropped(self, kind: RateLimitDropKind) -> None:
        """Count one thing a rate limit made the bridge give up."""
        self.drops.labels(kind=kind).inc()


class Metrics:
    """The bridge's metrics. Build one per process (or per test) on its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process_metrics: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if process_metrics:
            # process_cpu_seconds_total, process_resident_memory_bytes, ... for the dashboard.
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        p = "genesys_bridge_"
        self.build_info = Info(p + "build", "Version of the running bridge.", registry=r)
        self.build_info.info({"version": bridge.__version__})

        self.sessions = Gauge(p + "sessions", "Live sessions by state.", ["state"], registry=r)
        self.session_failures = Counter(
            p + "session_failures", "Sessions that failed (actor crash or gave up).", ["reason"], registry=r
        )
        self.sessions_ended = Counter(p + "sessions_ended", "Sessions ended, by reason.", ["reason"], registry=r)
        self.session_limit = Gauge(
            p + "session_limit", "Live sessions this process accepts at most (BRIDGE_MAX_SESSIONS).", registry=r
        )
        self.commands = CommandMetrics(r, p)
        self.command_latency = Histogram(
            p + "command_duration_seconds",
            "Intake to settled outcome, by command type.",
            ["type"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inbox_depth = Gauge(p + "inbox_depth", "Commands waiting in session inboxes, all sessions.", registry=r)
        self.dead_lettered = Counter(p + "dead_lettered", "Commands dead-lettered, by reason.", ["reason"], registry=r)

        self.events_published = Counter(p + "events_published", "Events confirmed by the broker.", ["type"], registry=r)
        self.publish_confirm_latency = Histogram(
            p + "publish_confirm_seconds", "Publish to broker confirm.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.publish_buffer = Gauge(p + "publish_buffer_events", "Events waiting to be published.", registry=r)
        self.events_returned = Counter(
            p + "events_returned",
            "Mandatory publishes returned unroutable, by destination (events = no queue bound; reply_to = gone).",
            ["destination"],
            registry=r,
        )
        self.events_skipped = Counter(
            p + "events_skipped",
            "Informational events not published: their routing key was returned unroutable in the last 30 s.",
            ["type"],
            registry=r,
        )
        self.settle_failures = Counter(
            p + "delivery_settle_failures",
            "Acks/nacks that could not be sent (channel gone; the broker redelivers), by action.",
            ["action"],
            registry=r,
        )
        self.broker_connected = Gauge(p + "broker_connected", "1 while both broker connections are up.", registry=r)
        self.intake_consuming = Gauge(p + "intake_consuming", "1 while the intake consumer is consuming.", registry=r)
        self.ready = Gauge(p + "ready", "1 while /readyz answers 200.", registry=r)

        self.reconnects = Counter(p + "reconnects", "Reconnect attempts, by target.", ["target"], registry=r)
        self.genesys_errors = Counter(p + "genesys_errors", "Genesys error frames, by code.", ["code"], registry=r)
        self.rate_limit = RateLimitMetrics(r, p)
        self.backfilled = Counter(p + "backfilled_messages", "Messages published from history backfill.", registry=r)
        self.duplicates_dropped = Counter(
            p + "duplicates_dropped", "Genesys messages dropped as already published.", registry=r
        )
        self.recovery_pending = Gauge(p + "recovery_pending_sessions", "Sessions still to resume at boot.", registry=r)
        self.sessions_recovered = Counter(
            p + "sessions_recovered", "Sessions resumed at boot, by result.", ["result"], registry=r
        )
        self.journal_corrupt = Counter(
            p + "journal_corrupt_records", "Journal records skipped as unreadable.", registry=r
        )
        self.partitions = Gauge(p + "partitions", "Partitions of the deployment (BRIDGE_PARTITIONS).", registry=r)
        self.partitions_owned = Gauge(p + "partitions_owned", "Partitions this replica owns now.", registry=r)
        self.ownership_changes = Counter(
            p + "partition_ownership_changes",
            "Partitions gained, released (balance or shutdown) and lost (broker link gone), by change.",
            ["change"],
            registry=r,
        )
        self.sessions_moved = Counter(
            p + "sessions_moved",
            "Sessions taken over with a partition (in) or handed off with one (out).",
            ["direction"],
            registry=r,
        )
        self.failover_duration = Histogram(
            p + "failover_duration_seconds",
            "Oldest message waiting when a partition was gained (about when its last owner was lost) to all "
            "of its sessions resumed.",
            buckets=(0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0),
            registry=r,
        )
        self.replicas = Gauge(
            p + "replicas",
            "Replicas of the deployment, as this one counts them (consumers of the presence queue).",
            registry=r,
        )
        self.router_active = Gauge(
            p + "router_active", "1 while this replica is the active command router.", registry=r
        )
        self.router_routed = Counter(
            p + "router_routed", "Commands the router moved into partition queues.", registry=r
        )
        self.router_lag = Gauge(
            p + "router_lag_seconds",
            "Age of the newest routed message when the router took it (publish to routing; probes count too).",
            registry=r,
        )
        self.router_backlog = Gauge(
            p + "router_backlog", "Commands waiting in the intake queue, as this replica last saw.", registry=r
        )
        self.journal_write_latency = Histogram(
            p + "journal_write_seconds",
            "A session record's write to the journal: encoded, appended (with others saved at once) and confirmed.",
            buckets=_ROUND_TRIP_BUCKETS,
            registry=r,
        )
        self.genesys_echo_latency = Histogram(
            p + "genesys_echo_seconds",
            "A message.send written to Genesys to its echo (a delivered send's Genesys round trip).",
            buckets=_ROUND_TRIP_BUCKETS,
            registry=r,
        )
        self.record_save_failures = Counter(
            p + "session_record_save_failures",
            "Session record saves that failed (the record stays pending; the next save or re-journal writes it).",
            registry=r,
        )
