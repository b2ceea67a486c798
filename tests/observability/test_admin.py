"""The read-only admin endpoint over real sockets: a small directory fake, then the real registry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from bridge.amqp.tools import delete_deployment
from bridge.app import running_bridge
from bridge.config import Settings
from bridge.observability.admin import AdminServer
from bridge.session.view import SessionView
from tests.session.conftest import DEPLOYMENT, running

CONNECTED = datetime(2026, 11, 26, 13, 42, 39, 923373, tzinfo=UTC)
VIEW = SessionView(session_id="order-4711", state="active", seq=7, deployment_id=DEPLOYMENT, connected_since=CONNECTED)


class Directory:
    """The registry's ``describe`` as the endpoint sees it: a dict of views, and the ids asked for."""

    def __init__(self, *views: SessionView) -> None:
        self.views = {v.session_id: v for v in views}
        self.asked: list[str] = []

    def describe(self, session_id: str) -> SessionView | None:
        self.asked.append(session_id)
        return self.views.get(session_id)


@pytest.fixture
def directory() -> Directory:
    return Directory(VIEW, SessionView("reconnecting-1", "reconnecting", 3, DEPLOYMENT, None))


async def _client(server: AdminServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", trust_env=False)


@pytest.fixture
async def open_admin(directory: Directory) -> AsyncIterator[httpx.AsyncClient]:
    async with AdminServer("127.0.0.1", 0, directory) as server, await _client(server) as client:
        yield client


@pytest.fixture
async def guarded_admin(directory: Directory) -> AsyncIterator[httpx.AsyncClient]:
    server = AdminServer("127.0.0.1", 0, directory, token=SecretStr("s3cret-admin"))
    async with server, await _client(server) as client:
        yield client


async def test_a_live_session_is_described(open_admin: httpx.AsyncClient) -> None:
    response = await open_admin.get("/sessions/order-4711")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {
        "session_id": "order-4711",
        "state": "active",
        "seq": 7,
        "deployment_id": DEPLOYMENT,
        "connected_since": "2026-11-26T13:42:39.923373+00:00",
        "partition": None,
        "owner": None,
    }


async def test_a_session_not_connected_has_no_connected_since(open_admin: httpx.AsyncClient) -> None:
    body = (await open_admin.get("/sessions/reconnecting-1")).json()
    assert (body["state"], body["connected_since"]) == ("reconnecting", None)


async def test_an_unknown_session_is_a_json_404(open_admin: httpx.AsyncClient, directory: Directory) -> None:
    response = await open_admin.get("/sessions/nobody")
    assert response.status_code == 404
    assert response.json() == {"error": "unknown_session", "session_id": "nobody"}
    assert directory.asked == ["nobody"]


async def test_only_reads_are_served(open_admin: httpx.AsyncClient) -> None:
    assert (await open_admin.delete("/sessions/order-4711")).status_code == 405
    assert (await open_admin.post("/sessions/order-4711")).status_code == 405
    assert (await open_admin.get("/sessions")).status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong",
        "Bearer s3cret-admin2",
        "s3cret-admin",
        "Basic s3cret-admin",
        "Bearer",
        "bearer s3cret-admin",
    ],
)
async def test_with_a_token_every_request_needs_it(
    guarded_admin: httpx.AsyncClient, directory: Directory, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for path in ("/sessions/order-4711", "/sessions/nobody", "/elsewhere"):
        response = await guarded_admin.get(path, headers=headers)
        assert response.status_code == 401, path
        assert response.json() == {"error": "unauthorized"}
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert directory.asked == [], "nothing is looked up for an unauthenticated caller"


async def test_with_the_token_the_session_is_answered(guarded_admin: httpx.AsyncClient) -> None:
    response = await guarded_admin.get("/sessions/order-4711", headers={"Authorization": "Bearer s3cret-admin"})
    assert response.status_code == 200
    assert response.json()["seq"] == 7
    unknown = await guarded_admin.get("/sessions/nobody", headers={"Authorization": "Bearer s3cret-admin"})
    assert unknown.status_code == 404


def test_the_token_never_shows_in_the_repr() -> None:
    server = AdminServer("127.0.0.1", 0, Directory(), token=SecretStr("s3cret-admin"))
    assert "s3cret" not in repr(server)


async def test_through_the_real_registry_without_any_secret() -> None:
    """A session started through the registry (against the in-memory Genesys peer), described over HTTP."""
    async with running() as h:
        token = await h.start("admin-s1")
        async with AdminServer("127.0.0.1", 0, h.registry) as server, await _client(server) as client:
            before = datetime.now(UTC)
            response = await client.get("/sessions/admin-s1")
            assert response.status_code == 200
            body = response.json()
            assert body["session_id"] == "admin-s1"
            assert body["state"] == "active"
            assert body["deployment_id"] == DEPLOYMENT
            assert body["seq"] == h.registry.get("admin-s1").seq >= 3  # state changes and session.started
            connected = datetime.fromisoformat(body["connected_since"])
            assert before - timedelta(seconds=30) < connected <= before
            assert (body["partition"], body["owner"]) == (None, None)
            assert token not in response.text
            assert (await client.get("/sessions/admin-s2")).status_code == 404


async def test_the_daemon_serves_it_only_when_a_port_is_set(amqp_url: str) -> None:
    """Wired in the app on its own port (never on the metrics port), behind the configured token."""
    prefix = f"t.admin.{uuid.uuid4().hex[:8]}"
    names = {
        "command_exchange": f"{prefix}.commands",
        "intake_queue": f"{prefix}.intake",
        "event_exchange": f"{prefix}.events",
        "dead_letter_queue": f"{prefix}.dlq",
    }
    base = {"amqp_url": amqp_url, "durable_sessions": False, "http_host": "127.0.0.1", "http_port": 0, **names}
    try:
        async with running_bridge(Settings.load(**base)) as bridge, httpx.AsyncClient(trust_env=False) as client:
            async with asyncio.timeout(30):
                await bridge.recovered.wait()  # stop a started bridge: the drain never races the start
            assert bridge.admin is None
            metrics_port = f"http://127.0.0.1:{bridge.http.port}"
            assert (await client.get(f"{metrics_port}/sessions/x")).status_code == 404
        settings = Settings.load(**base, admin_port=0, admin_token="s3cret-admin")
        async with running_bridge(settings) as bridge, httpx.AsyncClient(trust_env=False) as client:
            async with asyncio.timeout(30):
                await bridge.recovered.wait()
            assert bridge.admin is not None
            url = f"http://127.0.0.1:{bridge.admin.port}/sessions/nobody"
            assert (await client.get(url)).status_code == 401
            response = await client.get(url, headers={"Authorization": "Bearer s3cret-admin"})
            assert (response.status_code, response.json()["error"]) == (404, "unknown_session")
    finally:
        await delete_deployment(amqp_url, Settings.load(**base))
