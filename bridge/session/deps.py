"""The injected dependencies every session actor shares. Every seam is injected; only ``bridge.app`` builds
the real ones."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.config import Settings
from bridge.observability.metrics import Metrics
from bridge.ports import Clock, Connector, EventSink, SessionStore
from bridge.session.outcomes import OutcomeBook
from bridge.session.pacer import ConnectPacer, ConnectWindow
from bridge.session.ports import Backoff, EndpointResolver, FeatureSource, HistoryClient, UploadClient

__all__ = ["SessionDeps"]


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
