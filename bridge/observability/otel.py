"""The :class:`~bridge.observability.tracing.Tracer` on OpenTelemetry (the ``otel`` extra).

Only ``bridge.app`` imports this module, and only when ``BRIDGE_OTEL_ENABLED`` is set. When the process
already has an SDK tracer provider (``opentelemetry-instrument`` set one up), spans go there; otherwise
:func:`start_tracing` sets one up that exports over OTLP, configured by the standard ``OTEL_*`` variables
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import bridge
from bridge.observability.tracing import AttributeValue, Span, Tracer
from bridge.ports import TraceContext

__all__ = ["OpenTelemetryTracer", "start_tracing"]

_PROPAGATOR = TraceContextTextMapPropagator()


class _NoSpan:
    def set_attribute(self, key: str, value: AttributeValue) -> None:
        return None


class OpenTelemetryTracer:
    """Spans from an OpenTelemetry tracer: ``CONSUMER`` spans for commands, ``CLIENT`` spans for Genesys."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def command(
        self, name: str, *, parent: TraceContext | None, attributes: Mapping[str, AttributeValue]
    ) -> AbstractContextManager[Span]:
        context = _PROPAGATOR.extract(parent.headers()) if parent is not None else None
        return self._tracer.start_as_current_span(name, context=context, kind=SpanKind.CONSUMER, attributes=attributes)

    def round_trip(self, name: str) -> AbstractContextManager[Span]:
        if not trace.get_current_span().get_span_context().is_valid:
            return nullcontext(_NoSpan())
        return self._tracer.start_as_current_span(name, kind=SpanKind.CLIENT)


def start_tracing() -> tuple[Tracer, Callable[[], None]]:
    """The tracer, and how to flush and stop it at exit. Sets up an SDK provider exporting over OTLP unless
    the process has one already.

    Raises:
        ImportError: the ``otel`` extra (opentelemetry-sdk and its OTLP exporter) is not installed.
    """
    provider = trace.get_tracer_provider()
    shutdown: Callable[[], None] = lambda: None  # noqa: E731 - a provider set up elsewhere is shut down there
    if not hasattr(provider, "add_span_processor"):  # the API's default proxy: no SDK configured yet
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # OTEL_SERVICE_NAME, when set, names the service; attributes given here would override it.
        named = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "genesys-bridge"}
        sdk = TracerProvider(resource=Resource.create(named))
        sdk.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(sdk)
        provider, shutdown = sdk, sdk.shutdown
    return OpenTelemetryTracer(provider.get_tracer("genesys-bridge", bridge.__version__)), shutdown
