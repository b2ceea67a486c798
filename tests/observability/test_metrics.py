"""The typed metric methods keep their labels a closed vocabulary."""

from __future__ import annotations

from typing import Any, cast

from prometheus_client import CollectorRegistry

from bridge.observability.metrics import Metrics


def _metrics() -> Metrics:
    return Metrics(CollectorRegistry(), process_metrics=False)


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_settled_commands_are_counted_by_type_status_and_reason() -> None:
    metrics = _metrics()
    metrics.commands.settled("message.send", "failed", "rate_limited")
    metrics.commands.settled("message.send", "failed", "rate_limited")
    metrics.commands.settled("unknown", "rejected", "schema_invalid")
    metrics.commands.settled("session.end", "duplicate", "ok")
    name = "genesys_bridge_commands_total"
    assert _value(metrics, name, type="message.send", status="failed", reason="rate_limited") == 2
    assert _value(metrics, name, type="unknown", status="rejected", reason="schema_invalid") == 1
    assert _value(metrics, name, type="session.end", status="duplicate", reason="ok") == 1


def test_a_reason_outside_the_contract_never_opens_a_new_series() -> None:
    """A string that got past the types is folded into internal_error, and counting never raises."""
    metrics = _metrics()
    metrics.commands.settled("message.send", cast(Any, "delivered"), cast(Any, "sess-4711 said no"))
    metrics.commands.settled("message.send", cast(Any, "exploded"), "ok")
    name = "genesys_bridge_commands_total"
    assert _value(metrics, name, type="message.send", status="delivered", reason="internal_error") == 1
    assert _value(metrics, name, type="message.send", status="failed", reason="ok") == 1


def test_rate_limits_split_into_delays_and_drops() -> None:
    metrics = _metrics()
    metrics.rate_limit.delayed("connect", 12.5)
    metrics.rate_limit.delayed("connect", -1.0)  # a clock step never records a negative wait
    metrics.rate_limit.dropped("typing")
    assert _value(metrics, "genesys_bridge_rate_limit_delay_seconds_count", kind="connect") == 2
    assert _value(metrics, "genesys_bridge_rate_limit_delay_seconds_sum", kind="connect") == 12.5
    assert _value(metrics, "genesys_bridge_rate_limit_delay_seconds_bucket", kind="connect", le="30.0") == 2
    assert _value(metrics, "genesys_bridge_rate_limit_drops_total", kind="typing") == 1


def test_session_limit_is_a_plain_gauge() -> None:
    metrics = _metrics()
    metrics.session_limit.set(250)
    assert _value(metrics, "genesys_bridge_session_limit") == 250
