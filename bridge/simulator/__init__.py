"""A local Genesys Cloud Web Messaging server (WebSocket + REST) with a scripted agent and fault injection.

It plays the Genesys side of the protocol reference (``docs/genesys-protocol.md``, §12 blueprint)
independently of the bridge's client code, so both sides check each other. ``SimulatorConfig()`` behaves
like a new real deployment; ``SimulatorConfig.everything_on()`` switches every optional feature on. See
``docs/simulator.md``.
"""

from __future__ import annotations

from bridge.simulator.auth import Identity
from bridge.simulator.cli import main
from bridge.simulator.config import PROFILES, SimulatorConfig
from bridge.simulator.connection import FaultPlan
from bridge.simulator.control import SessionRef
from bridge.simulator.server import Simulator
from bridge.simulator.session import Attachment, AttachmentStatus, GenesysSessionState, Received, Session

__all__ = [
    "PROFILES",
    "Attachment",
    "AttachmentStatus",
    "FaultPlan",
    "GenesysSessionState",
    "Identity",
    "Received",
    "Session",
    "SessionRef",
    "Simulator",
    "SimulatorConfig",
    "main",
]
