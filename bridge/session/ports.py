"""The seams the session layer needs beyond :mod:`bridge.ports`: REST history, uploads, endpoints, backoff.

Real implementations live in ``bridge.genesys`` (``rest.GenesysRest``, ``urls.endpoints_for``); tests
pass small fakes. Only ``bridge.app`` wires the real ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bridge.backoff import Backoff, jittered_backoff
from bridge.config import Settings
from bridge.genesys.auth import Tokens
from bridge.genesys.deployment_config import DeploymentFeatures
from bridge.genesys.frames import StructuredMessage
from bridge.observability.metrics import Metrics
from bridge.observability.tracing import NO_TRACER, Tracer
from bridge.ports import Clock, Connector, EventSink, SessionStore
from bridge.session.flow import ConnectPacer, ConnectWindow
from bridge.session.heartbeat import Heartbeat
from bridge.session.outcomes import OutcomeBook
from genesys_bridge_client.contract.commands import SessionAuth

__all__ = [
    "Backoff",
    "EndpointResolver",
    "Endpoints",
    "FeatureSource",
    "HistoryClient",
    "HistoryPageView",
    "SessionDeps",
    "UploadClient",
    "jittered_backoff",
    "spread_phase",
]


class HistoryPageView(Protocol):
    """One page of ``GET /api/v2/webmessaging/messages`` (protocol reference §9). Page 1 is the newest."""

    @property
    def entities(self) -> Sequence[StructuredMessage]: ...

    @property
    def page_count(self) -> int: ...


class HistoryClient(Protocol):
    """Fetches history pages with the JWT from ``getJwt`` (§4.5, §9)."""

    async def fetch_history(
        self, rest_base: str, jwt: str, *, page_number: int, page_size: int, origin: str | None
    ) -> HistoryPageView:
        """Raise ``GenesysUnavailable`` (retryable) or ``GenesysRejected`` (final) on failure."""
        ...


class AuthClient(Protocol):
    """Genesys' token endpoints for authenticated sessions (§4.2): :class:`bridge.genesys.rest.GenesysRest`."""

    async def exchange_grant(
        self, rest_base: str, deployment_id: str, grant: SessionAuth, *, origin: str | None
    ) -> Tokens:
        """Exchange a code or ID token; raise ``GenesysAuthFailed`` (refused) or ``GenesysUnavailable``."""
        ...

    async def refresh_jwt(
        self, rest_base: str, deployment_id: str, refresh_token: str, *, origin: str | None
    ) -> Tokens:
        """Renew the JWT; raise ``GenesysAuthFailed`` (refused) or ``GenesysUnavailable``."""
        ...

    async def revoke_jwt(self, rest_base: str, jwt: str, *, origin: str | None) -> None:
        """Revoke the tokens; raise ``GenesysAuthFailed`` (refused) or ``GenesysUnavailable``."""
        ...


class UploadClient(Protocol):
    """Moves attachment bytes (§4.6): downloads a command's URL, PUTs to the presigned URL."""

    async def upload(self, url: str, headers: Mapping[str, str], content: bytes, content_type: str) -> None:
        """PUT ``content`` with every presign header plus ``Content-Type``; raise a ``GenesysError`` on failure."""
        ...

    async def fetch_bytes(self, url: str, *, max_bytes: int) -> bytes:
        """Download ``url``; raise ``CommandRejected`` (or any ``BridgeError``) past ``max_bytes`` or on failure."""
        ...


class Endpoints(Protocol):
    """Where one region's Guest API lives (§2.1, §2.2)."""

    @property
    def rest_base(self) -> str: ...

    def websocket_url(self, deployment_id: str, *, application: str | None = None) -> str: ...

    def deployment_config_url(self, deployment_id: str) -> str: ...


#: ``region -> Endpoints``; raises ``CommandRejected("unknown_region", ...)`` for a region it does not know.
EndpointResolver = Callable[[str], Endpoints]


class FeatureSource(Protocol):
    """What a deployment's Messenger configuration allows (``bridge.genesys.deployment_config.DeploymentConfigs``)."""

    async def get(self, deployment_id: str, *, config_url: str) -> DeploymentFeatures | None:
        """The features, or ``None`` when they are not known (never raises for a failed fetch)."""
        ...


def spread_phase(interval_s: float) -> float:
    """A uniformly random delay in ``[0, interval_s)``: the first of a session's keepalives (ping, echo) waits
    it, so sessions opened together do not all check in the same second (``SessionDeps.keepalive_phase``
    unless ``session_deps`` is given another)."""
    return random.uniform(0.0, interval_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDeps:
    """Everything an actor needs from outside. Built once by the registry (from ``bridge.app``)."""

    settings: Settings
    connector: Connector
    sink: EventSink
    clock: Clock
    metrics: Metrics
    history: HistoryClient
    uploads: UploadClient
    endpoints: EndpointResolver
    backoff: Backoff
    book: OutcomeBook
    pacer: ConnectPacer
    connects: ConnectWindow
    features: FeatureSource | None = None  # None: never read config.json (try and read Genesys' answer)
    store: SessionStore | None = None
    tracer: Tracer = NO_TRACER
    auth: AuthClient | None = None  # None: authenticated sessions end auth_failed (tests without REST)
    heartbeat: Heartbeat  # the process's one timer for every session's pings and echoes
    keepalive_phase: Callable[[float], float]  # a first ping's or echo's delay, given its interval (spread_phase)
