"""A local Genesys Cloud Web Messaging server (WebSocket + REST) with a scripted agent and fault injection.

It plays the Genesys side of ``genesys-webmessaging-protocol.md`` (§12 blueprint) independently of the
bridge's client code, so both sides check each other. See ``docs/simulator.md``.
"""

from __future__ import annotations

from bridge.simulator.cli import main
from bridge.simulator.config import SimulatorConfig
from bridge.simulator.connection import FaultPlan
from bridge.simulator.server import SessionRef, Simulator
from bridge.simulator.session import Attachment, AttachmentStatus, Received, Session, SessionState

__all__ = [
    "Attachment",
    "AttachmentStatus",
    "FaultPlan",
    "Received",
    "Session",
    "SessionRef",
    "SessionState",
    "Simulator",
    "SimulatorConfig",
    "main",
]
