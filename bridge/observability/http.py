"""The daemon's small HTTP endpoint: ``/metrics``, ``/healthz`` and ``/readyz`` (aiohttp).

- ``/metrics``: Prometheus exposition of the injected registry (OpenMetrics when the scraper asks).
- ``/healthz``: liveness. The handler running at all proves the event loop turns; it also measures how
  long a callback waits in the loop's queue right now and answers 503 past ``max_loop_lag_s``, so a
  loop stuck behind CPU-bound work gets the pod restarted.
- ``/readyz``: readiness from the injected ``ready()`` callable (broker connected, intake consuming,
  not recovering, not draining — the app decides). 200 ``{"ready": true, ...}`` or 503 with the reasons.
  The answer is mirrored into the ``genesys_bridge_ready`` gauge on every probe and scrape.

Caller's duties: ``await start()`` once, ``await stop()`` at shutdown (or use ``async with``). The
server owns no tasks of its own beyond aiohttp's per-request handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import structlog
from aiohttp import web
from prometheus_client.exposition import choose_encoder

from bridge.observability.metrics import Metrics
from bridge.serving import AppServer

__all__ = ["ObservabilityServer", "ReadyCheck", "ReadyResult"]

#: ``ready()`` returns a bool, or a bool plus details (e.g. ``{"reasons": ["broker not connected"]}``).
ReadyResult = bool | tuple[bool, Mapping[str, object]]
ReadyCheck = Callable[[], ReadyResult]

_log = structlog.get_logger(__name__)


class ObservabilityServer(AppServer):
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (``port=0`` picks a free port).

    Args:
        host: bind address.
        port: bind port; 0 for any free port (read :attr:`port` after :meth:`start`).
        metrics: the process's metrics; ``/metrics`` exposes ``metrics.registry``.
        ready: called on every ``/readyz`` and ``/metrics``; must be cheap and must not block.
        max_loop_lag_s: ``/healthz`` answers 503 when a callback waits longer than this in the loop.
            ``None`` disables the check (the handler answering is then the whole proof of life).
    """

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        ready: ReadyCheck,
        *,
        max_loop_lag_s: float | None = 5.0,
    ) -> None:
        super().__init__(host, port)
        self._metrics = metrics
        self._ready = ready
        self._max_loop_lag_s = max_loop_lag_s

    def _build(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._handle_metrics)
        app.router.add_get("/healthz", self._handle_healthz)
        app.router.add_get("/readyz", self._handle_readyz)
        return app

    def check_ready(self) -> tuple[bool, dict[str, object]]:
        """Ask ``ready()`` and mirror the answer into the ``ready`` gauge."""
        try:
            result = self._ready()
        except Exception as exc:  # a broken check means "not ready", never a 500 or a dead endpoint
            _log.exception("ready_check_failed")
            result = (False, {"reasons": [f"ready check failed: {type(exc).__name__}"]})
        ok, details = (result, {}) if isinstance(result, bool) else (bool(result[0]), dict(result[1]))
        self._metrics.ready.set(1 if ok else 0)
        return ok, details

    async def _handle_metrics(self, request: web.Request) -> web.Response:
        self.check_ready()
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self._metrics.registry)
        # Set the header directly: aiohttp's content_type= refuses parameters such as version=.
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _handle_healthz(self, request: web.Request) -> web.Response:
        lag_s = await _loop_lag_s()
        healthy = self._max_loop_lag_s is None or lag_s <= self._max_loop_lag_s
        return web.json_response({"healthy": healthy, "loop_lag_s": round(lag_s, 6)}, status=200 if healthy else 503)

    async def _handle_readyz(self, request: web.Request) -> web.Response:
        ok, details = self.check_ready()
        return web.json_response({**details, "ready": ok}, status=200 if ok else 503)


async def _loop_lag_s() -> float:
    """How long a callback queued now waits before the loop runs it (the work queued ahead of it)."""
    loop = asyncio.get_running_loop()
    queued = loop.time()
    ran: asyncio.Future[float] = loop.create_future()

    def mark() -> None:
        if not ran.done():
            ran.set_result(loop.time())

    loop.call_soon(mark)
    return await ran - queued
