"""ObservabilityServer over real sockets, probed with httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import httpx
import pytest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS

from bridge.observability.http import ObservabilityServer, ReadyResult
from bridge.observability.metrics import Metrics


class Readiness:
    """What the app would report: flipped by the test."""

    def __init__(self) -> None:
        self.ok = False
        self.details: Mapping[str, object] = {"reasons": ["broker not connected", "intake not consuming"]}

    def __call__(self) -> ReadyResult:
        return self.ok, self.details


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(process_metrics=False)


@pytest.fixture
def readiness() -> Readiness:
    return Readiness()


@pytest.fixture
async def server(metrics: Metrics, readiness: Readiness) -> AsyncIterator[ObservabilityServer]:
    async with ObservabilityServer("127.0.0.1", 0, metrics, readiness) as srv:
        yield srv


@pytest.fixture
async def client(server: ObservabilityServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", trust_env=False) as c:
        yield c


async def test_metrics_exposition(client: httpx.AsyncClient, metrics: Metrics) -> None:
    metrics.commands.settled("message.send", "delivered", "ok")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert 'genesys_bridge_commands_total{reason="ok",status="delivered",type="message.send"} 1.0' in response.text
    assert "genesys_bridge_build_info" in response.text
    assert "genesys_bridge_ready 0.0" in response.text  # refreshed from ready() on every scrape


async def test_metrics_negotiates_openmetrics(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert OPENMETRICS.startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_healthz_answers_while_the_loop_turns(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["healthy"] is True
    assert body["loop_lag_s"] >= 0


async def test_healthz_reports_a_lagging_loop(metrics: Metrics, readiness: Readiness) -> None:
    # Any measured lag is above a negative bound: exercises the 503 path without stalling a loop.
    async with (
        ObservabilityServer("127.0.0.1", 0, metrics, readiness, max_loop_lag_s=-1.0) as srv,
        httpx.AsyncClient(trust_env=False) as c,
    ):
        response = await c.get(f"http://127.0.0.1:{srv.port}/healthz")
    assert response.status_code == 503
    assert response.json()["healthy"] is False


async def test_readyz_follows_ready_and_mirrors_the_gauge(
    client: httpx.AsyncClient, readiness: Readiness, metrics: Metrics
) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "reasons": ["broker not connected", "intake not consuming"]}
    assert metrics.registry.get_sample_value("genesys_bridge_ready") == 0.0

    readiness.ok, readiness.details = True, {"sessions": 3}
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "sessions": 3}
    assert metrics.registry.get_sample_value("genesys_bridge_ready") == 1.0


async def test_ready_may_be_a_plain_bool(metrics: Metrics) -> None:
    async with (
        ObservabilityServer("127.0.0.1", 0, metrics, lambda: True) as srv,
        httpx.AsyncClient(trust_env=False) as c,
    ):
        response = await c.get(f"http://127.0.0.1:{srv.port}/readyz")
    assert (response.status_code, response.json()) == (200, {"ready": True})


async def test_port_zero_binds_and_stop_is_idempotent(metrics: Metrics) -> None:
    srv = ObservabilityServer("127.0.0.1", 0, metrics, lambda: False)
    with pytest.raises(RuntimeError):
        _ = srv.port
    await srv.start()
    port = srv.port
    assert port > 0
    await srv.stop()
    await srv.stop()
    async with httpx.AsyncClient(trust_env=False) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(f"http://127.0.0.1:{port}/healthz")


async def test_taken_port_raises_oserror(server: ObservabilityServer, metrics: Metrics) -> None:
    with pytest.raises(OSError):
        await ObservabilityServer("127.0.0.1", server.port, metrics, lambda: True).start()


async def test_unknown_path_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nope")).status_code == 404


async def test_a_failing_ready_check_is_not_ready(metrics: Metrics) -> None:
    def broken() -> ReadyResult:
        raise KeyError("bug")

    async with (
        ObservabilityServer("127.0.0.1", 0, metrics, broken) as srv,
        httpx.AsyncClient(trust_env=False) as c,
    ):
        response = await c.get(f"http://127.0.0.1:{srv.port}/readyz")
        scrape = await c.get(f"http://127.0.0.1:{srv.port}/metrics")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "reasons": ["ready check failed: KeyError"]}
    assert scrape.status_code == 200
