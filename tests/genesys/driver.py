"""Drive a GuestProtocol frame by frame: build one, collect what it writes, feed it server frames."""

from __future__ import annotations

import json
from typing import Any

from bridge.genesys.events import PendingRequest, ProtocolEvent, ProtocolState
from bridge.genesys.protocol import GuestProtocol
from tests.genesys import wire

TOKEN = "6c1b0e52-9a7f-4f7e-8d8b-1e2a3b4c5d6e"
DEPLOYMENT = "0f4f1d2a-5b1e-4e0e-9f3a-2f5d8c1a7b10"


def new_protocol() -> GuestProtocol:
    """A protocol whose generated tracing ids are ``gen-1``, ``gen-2`` ..."""
    counter = iter(range(1, 10_000))
    return GuestProtocol(token=TOKEN, deployment_id=DEPLOYMENT, id_factory=lambda: f"gen-{next(counter)}")


def configured_protocol() -> GuestProtocol:
    """A protocol on an open socket, configured by ``t-001``, with nothing left to write."""
    p = new_protocol()
    p.connection_made()
    p.configure(tracing_id="t-001")
    feed(p, wire.session_response("t-001"))
    p.frames_to_send()
    assert p.state is ProtocolState.CONFIGURED
    return p


def text_request(tracing_id: str) -> PendingRequest:
    """The pending request of ``send_message(tracing_id=..., text=...)``."""
    return PendingRequest(tracing_id, "onMessage", has_text=True)


def sent(p: GuestProtocol) -> list[dict[str, Any]]:
    """The frames the protocol queued since the last call, decoded."""
    return [json.loads(f) for f in p.frames_to_send()]


def feed(p: GuestProtocol, *frames: str) -> list[ProtocolEvent]:
    """Receive ``frames`` in order; return the events they produced."""
    for f in frames:
        p.receive(f)
    return p.events_received()
