"""The control API over HTTP, and the command line (``python -m bridge.simulator``)."""

from __future__ import annotations

import asyncio
import signal
import sys

import httpx
import pytest

from bridge.simulator import Simulator
from tests.simulator.conftest import EVERYTHING_ON, GuestFactory


@pytest.mark.parametrize("config", [EVERYTHING_ON])
async def test_control_over_http(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await guest.say("hi", channel={"metadata": {"customAttributes": {"bridge_session_id": "s1"}}})
    await guest.recv()
    lookup = {"attribute": {"key": "bridge_session_id", "value": "s1"}}
    async with httpx.AsyncClient(base_url=sim.base_url + "/control") as http:
        health = (await http.get("/health")).json()
        assert health == {"ok": True, "port": sim.port, "sessions": 1}
        [listed] = (await http.get("/sessions")).json()["sessions"]
        assert listed["token"] == guest.token
        assert listed["customAttributes"] == {"bridge_session_id": "s1"}
        info = (await http.post("/session", json=lookup)).json()
        assert info["sessionId"] == listed["sessionId"]

        said = (await http.post("/agent_say", json={**lookup, "text": "from http", "nickname": "Ann"})).json()
        frame = await guest.recv()
        assert (frame["body"]["id"], frame["body"]["text"]) == (said["id"], "from http")
        await http.post("/agent_typing", json={"index": 0})
        assert (await guest.recv())["body"]["events"][0]["eventType"] == "Typing"

        await guest.say("second", tracing_id="s2")
        received = (await http.post("/received", json={"token": guest.token, "count": 2, "timeout_s": 5})).json()
        assert [r["body"]["text"] for r in received["received"]] == ["hi", "second"]
        await guest.recv()

        await http.post("/add_history", json={"token": guest.token, "text": "missed"})
        history = (await http.post("/history", json={"token": guest.token})).json()["history"]
        assert [m["text"] for m in history] == ["hi", "from http", "second", "missed"]

        plan = (await http.post("/faults", json={"token": guest.token, "fail_next": 1})).json()
        assert plan["fail_next"] == 1
        await guest.send("getJwt")
        assert (await guest.recv())["code"] == 5000

        await http.post("/disconnect", json={"token": guest.token, "read_only": True})
        assert (await guest.recv())["body"]["metadata"]["readOnly"] == "true"
        assert (await http.post("/drop_connections", json={"token": guest.token})).json() == {"dropped": 1}
        assert await guest.closed() == 1006

        assert (await http.post("/session", json={"token": "nope"})).status_code == 404
        assert (await http.post("/session", json={})).status_code == 400
        assert (await http.post("/session", content=b"not json")).status_code == 400
        waited = await http.post("/wait_session", json={"token": "never", "timeout_s": 0.01})
        assert waited.status_code == 504


async def test_wait_session_over_http(sim: Simulator, guest_factory: GuestFactory) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url + "/control") as http:
        waiting = asyncio.create_task(http.post("/wait_session", json={"first_text": "knock knock", "timeout_s": 5}))
        guest = await guest_factory()
        await guest.say("knock knock")
        response = await waiting
        assert response.json()["token"] == guest.token
        await http.post("/expire", json={"token": guest.token})
        await guest.recv_class("SessionExpiredEvent")


async def test_clear_over_http(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    async with httpx.AsyncClient(base_url=sim.base_url + "/control") as http:
        await http.post("/clear", json={"token": guest.token})
    assert (await guest.recv())["class"] == "SessionClearedEvent"
    assert (await guest.recv())["class"] == "ConnectionClosedEvent"


async def test_command_line_prints_port_and_stops_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.simulator",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-agent",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            line = (await process.stdout.readline()).decode().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        async with httpx.AsyncClient() as http:
            assert (await http.get(line.removeprefix("listening on ") + "/control/health")).json()["ok"] is True
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
