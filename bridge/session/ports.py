"""The seams the session layer needs beyond :mod:`bridge.ports`: REST history, uploads, endpoints, backoff.

Real implementations live in ``bridge.genesys`` (``rest.GenesysRest``, ``urls.endpoints_for``); tests
pass small fakes. Only ``bridge.app`` wires the real ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

import tenacity

from bridge.genesys.deployment_config import DeploymentFeatures
from bridge.genesys.frames import StructuredMessage

__all__ = [
    "Backoff",
    "EndpointResolver",
    "Endpoints",
    "FeatureSource",
    "HistoryClient",
    "HistoryPageView",
    "UploadClient",
    "jittered_backoff",
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

#: A fresh iterator of reconnect delays (seconds) per outage. Injected so tests can pin it.
Backoff = Callable[[], Iterator[float]]


class FeatureSource(Protocol):
    """What a deployment's Messenger configuration allows (``bridge.genesys.deployment_config.DeploymentConfigs``)."""

    async def get(self, deployment_id: str, *, config_url: str) -> DeploymentFeatures | None:
        """The features, or ``None`` when they are not known (never raises for a failed fetch)."""
        ...


def jittered_backoff(initial_s: float, max_s: float) -> Backoff:
    """Exponential backoff with jitter, computed by tenacity (the engine under stamina): attempt n waits
    ``min(max_s, initial_s * 2**(n-1)) + uniform(0, initial_s)``. We write no backoff formula ourselves.

    The waits are slept on the event loop, so virtual time (looptime) runs them instantly in tests.
    """
    wait = tenacity.wait_exponential_jitter(multiplier=initial_s, max=max_s, jitter=initial_s)

    def delays() -> Iterator[float]:
        for attempt in itertools.count(1):
            state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
            state.attempt_number = attempt
            yield min(max_s, wait(state))

    return delays
