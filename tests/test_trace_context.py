"""W3C trace context read from a command's AMQP headers: kept when well formed, dropped (never refused) otherwise."""

from __future__ import annotations

import pytest

from bridge.ports import MAX_TRACESTATE_CHARS, TraceContext, event_routing_key

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (None, None),
        ({}, None),
        ({"traceparent": PARENT}, TraceContext(PARENT)),
        ({"traceparent": PARENT.encode()}, TraceContext(PARENT)),  # AMQP tables may carry bytes
        ({"traceparent": f" {PARENT} ", "tracestate": "a=1,b=2"}, TraceContext(PARENT, "a=1,b=2")),
        ({"traceparent": PARENT, "tracestate": "x" * (MAX_TRACESTATE_CHARS + 1)}, TraceContext(PARENT)),
        ({"traceparent": PARENT, "tracestate": "  "}, TraceContext(PARENT)),
        ({"traceparent": PARENT.upper()}, None),  # W3C: lower-case hex only
        ({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}, None),  # an all-zero trace id is invalid
        ({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01"}, None),
        ({"traceparent": b"\xff\xfe"}, None),
        ({"traceparent": 42}, None),
        ({"tracestate": "a=1"}, None),
    ],
)
def test_trace_context_from_headers(headers: dict[str, object] | None, expected: TraceContext | None) -> None:
    assert TraceContext.from_headers(headers) == expected


def test_headers_round_trip() -> None:
    trace = TraceContext(PARENT, "a=1")
    assert TraceContext.from_headers(trace.headers()) == trace
    assert TraceContext(PARENT).headers() == {"traceparent": PARENT}


def test_event_routing_key() -> None:
    assert event_routing_key("message.received", "dep") == "message.received.dep"
    assert event_routing_key("message.received", None) == "message.received.unknown"
    assert event_routing_key("message.received", "dep", "billing") == "message.received.dep.billing"
