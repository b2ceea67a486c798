"""Spans for command handling and the Genesys round trips it makes: the port, and the no-op default.

The bridge speaks to a :class:`Tracer`; :mod:`bridge.observability.otel` implements it with OpenTelemetry
when ``BRIDGE_OTEL_ENABLED`` is set and the ``otel`` extra is installed. A command span's parent is the
W3C trace context the command carried, so a command's handling joins the trace of the service that sent it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Final, Protocol

from bridge.ports import TraceContext

__all__ = ["NO_TRACER", "AttributeValue", "NoTracer", "Span", "Tracer"]

AttributeValue = str | int | float | bool


class Span(Protocol):
    """The open span a ``with`` block gets: attributes learned on the way (an outcome, say) go on it."""

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...


class Tracer(Protocol):
    """Where spans come from. Exceptions that leave a span's block mark it failed."""

    def command(
        self, name: str, *, parent: TraceContext | None, attributes: Mapping[str, AttributeValue]
    ) -> AbstractContextManager[Span]:
        """A span for handling one command, the child of ``parent`` (the command's trace context) when given."""
        ...

    def round_trip(self, name: str) -> AbstractContextManager[Span]:
        """A span for one request to Genesys, the child of the current command span. Outside a command (a
        keepalive echo, say) it records nothing: those are not part of anyone's trace."""
        ...


class _NoSpan:
    def set_attribute(self, key: str, value: AttributeValue) -> None:
        return None


_NO_SPAN: Final = _NoSpan()


class NoTracer:
    """Tracing off: every span is a no-op (the default)."""

    def command(
        self, name: str, *, parent: TraceContext | None, attributes: Mapping[str, AttributeValue]
    ) -> AbstractContextManager[Span]:
        return contextlib.nullcontext(_NO_SPAN)

    def round_trip(self, name: str) -> AbstractContextManager[Span]:
        return contextlib.nullcontext(_NO_SPAN)


NO_TRACER: Final[Tracer] = NoTracer()
