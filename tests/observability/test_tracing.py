"""OpenTelemetry spans: a command's handling joins the sender's trace, and its Genesys round trips nest in it."""

from __future__ import annotations

import sys

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from bridge.app import run_daemon
from bridge.config import Settings
from bridge.errors import EXIT_CONFIG
from bridge.observability.otel import OpenTelemetryTracer
from bridge.ports import TraceContext
from genesys_bridge_client.contract import MessageSend
from tests.session.conftest import running

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACE = TraceContext(f"00-{TRACE_ID}-{PARENT_ID}-01")


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exported: InMemorySpanExporter) -> OpenTelemetryTracer:
    provider = TracerProvider()  # not the global one: each test has its own
    provider.add_span_processor(SimpleSpanProcessor(exported))
    return OpenTelemetryTracer(provider.get_tracer("test"))


def _named(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.name == name]
    return span


@pytest.mark.looptime
async def test_a_command_span_continues_the_senders_trace_and_holds_its_round_trip(
    tracer: OpenTelemetryTracer, exported: InMemorySpanExporter
) -> None:
    async with running(tracer=tracer) as h:
        await h.start()
        await h.submit(MessageSend(command_id="m1", session_id="s1", text="hello"), trace=TRACE)
        await h.sink.wait_outcome("m1")

    spans = exported.get_finished_spans()
    command = _named(spans, "message.send")
    assert command.kind is SpanKind.CONSUMER
    assert format(command.context.trace_id, "032x") == TRACE_ID
    assert command.parent is not None
    assert format(command.parent.span_id, "016x") == PARENT_ID
    assert command.attributes is not None
    assert command.attributes["genesys_bridge.command_id"] == "m1"
    assert command.attributes["genesys_bridge.outcome"] == "delivered/ok"

    round_trip = _named(spans, "genesys send message")
    assert round_trip.kind is SpanKind.CLIENT
    assert round_trip.parent is not None
    assert round_trip.parent.span_id == command.context.span_id
    assert round_trip.context.trace_id == command.context.trace_id


@pytest.mark.looptime
async def test_a_command_without_trace_context_starts_its_own_trace(
    tracer: OpenTelemetryTracer, exported: InMemorySpanExporter
) -> None:
    async with running(tracer=tracer) as h:
        await h.start()
    start = _named(exported.get_finished_spans(), "session.start")
    assert start.parent is None


def test_a_round_trip_outside_a_command_records_nothing(
    tracer: OpenTelemetryTracer, exported: InMemorySpanExporter
) -> None:
    with tracer.round_trip("genesys echo") as span:
        span.set_attribute("ignored", True)
    assert exported.get_finished_spans() == ()


async def test_tracing_asked_for_without_the_extra_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bridge.observability.otel", None)  # as if the otel extra were absent
    assert await run_daemon(Settings(otel_enabled=True)) == EXIT_CONFIG
