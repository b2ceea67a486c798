"""Every metric the bridge exports, declared in one container on an injected registry.

Names carry the ``genesys_bridge_`` prefix. No label ever holds a session id (unbounded cardinality);
labels are closed vocabularies (command type, outcome status, Genesys code, state).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

import bridge

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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
        self.commands = Counter(
            p + "commands", "Commands settled, by type and outcome.", ["type", "status"], registry=r
        )
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
        self.rate_limit_waits = Counter(
            p + "rate_limit_waits", "Sends delayed or dropped by a rate limit, by kind.", ["kind"], registry=r
        )
        self.rate_limit_wait_seconds = Histogram(
            p + "rate_limit_wait_seconds", "Time spent waiting for send budget.", buckets=_LATENCY_BUCKETS, registry=r
        )
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
        self.record_save_failures = Counter(
            p + "session_record_save_failures",
            "Session record saves that failed (the record stays pending; the next save or re-journal writes it).",
            registry=r,
        )
