"""Conformance: configureSession, connections, closeSession, expiry, deployments and origins (§2, §4.1, §4.7, §7)."""

from __future__ import annotations

import re
import time
from contextlib import AsyncExitStack

import pytest
from websockets.exceptions import InvalidStatus

from bridge.simulator import SessionState, Simulator, SimulatorConfig
from tests.simulator.conftest import DEPLOYMENT, GuestFactory, frozen_clock, open_guest


async def test_create_returns_full_session_response(guest_factory: GuestFactory) -> None:
    guest = await guest_factory(configure=False)
    frame = await guest.configure(tracing_id="t-42")
    assert frame["type"] == "response"
    assert frame["class"] == "SessionResponse"
    assert frame["code"] == 200
    assert frame["tracingId"] == "t-42"
    body = frame["body"]
    assert body["connected"] is True
    assert body["newSession"] is True
    assert body["readOnly"] is False
    assert body["maxCustomDataBytes"] == 2048
    assert body["allowedMedia"]["inbound"]["maxFileSizeKB"] == 10240
    assert {"type": "image/png"} in body["allowedMedia"]["inbound"]["fileTypes"]
    assert ".exe" in body["blockedExtensions"]
    assert body["durationSeconds"] == 259200
    assert abs(body["expirationDate"] - (time.time() + 259200)) < 60


async def test_resume_and_start_new(sim: Simulator, guest_factory: GuestFactory) -> None:
    first = await guest_factory()
    original = sim.session(first.token)
    again = await guest_factory(first.token, configure=False)
    resumed = await again.configure(start_new=False)
    assert resumed["body"]["newSession"] is False
    assert sim.session(first.token) is original

    fresh = await again.configure(start_new=True)
    assert fresh["body"]["newSession"] is True
    replacement = sim.session(first.token)
    assert replacement is not original
    assert original.state is SessionState.REPLACED
    assert replacement.index == original.index + 1
    assert sim.nth_session(-1) is replacement


async def test_nothing_but_configure_before_session_response(guest_factory: GuestFactory) -> None:
    guest = await guest_factory(configure=False)
    await guest.say("too early", tracing_id="m-0")
    frame = await guest.recv()
    assert (frame["class"], frame["code"], frame["body"]) == ("string", 4007, "Session not found")
    assert "tracingId" not in frame


async def test_unknown_and_schema_only_actions_fail_with_400(guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    for action in ("resumeToken", "disconnectCustomer", "noSuchAction"):
        await guest.send(action, tracingId=action)
        frame = await guest.recv()
        assert (frame["code"], frame["body"]) == (400, "Request failed.")
    await guest.ws.send("not json")
    assert (await guest.recv())["code"] == 400


async def test_fourth_connection_closes_the_oldest(sim: Simulator, guest_factory: GuestFactory) -> None:
    first = await guest_factory()
    others = [await guest_factory(first.token) for _ in range(2)]
    assert len(sim.session(first.token).connections) == 3
    await guest_factory(first.token)
    assert (await first.recv())["class"] == "ConnectionClosedEvent"
    assert await first.closed() == 1000
    session = sim.session(first.token)
    assert len(session.connections) == 3
    for other in others:  # the others are untouched and still receive the fan-out
        await other.say("still here")
        assert (await other.recv_class("StructuredMessage"))["body"]["text"] == "still here"


async def test_close_session(sim: Simulator, guest_factory: GuestFactory) -> None:
    a = await guest_factory()
    b = await guest_factory(a.token)
    await a.send("closeSession", closeAllConnections=True, tracingId="c-1")
    assert (await b.recv())["class"] == "ConnectionClosedEvent"
    assert await b.closed() == 1000
    frame = await a.recv()
    assert frame["class"] == "SessionResponse"
    assert frame["tracingId"] == "c-1"
    assert frame["body"]["connected"] is False
    assert sim.session(a.token).connections == []
    await a.say("after close")
    assert (await a.recv())["code"] == 4007
    assert (await a.configure())["body"]["newSession"] is False


@pytest.mark.parametrize("config", [SimulatorConfig(agent_script=False, session_duration_s=0.05)])
async def test_expiry_after_inactivity(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    old = sim.session(guest.token)
    frame = await guest.recv()  # nothing else happens, so the next frame is the expiry
    assert frame["class"] == "SessionExpiredEvent"
    assert frame["body"] == {}
    assert old.state is SessionState.EXPIRED
    await guest.say("late")
    assert (await guest.recv())["code"] == 4006
    resumed = await guest.configure(start_new=False)
    assert resumed["body"]["newSession"] is True
    assert sim.session(guest.token) is not old


async def test_expire_via_control(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await sim.expire(guest.token)
    assert (await guest.recv())["class"] == "SessionExpiredEvent"
    await guest.send("getJwt")
    assert (await guest.recv())["code"] == 4006


@pytest.mark.parametrize("config", [SimulatorConfig(allowed_deployments=frozenset({DEPLOYMENT}))])
async def test_unknown_deployment_fails_at_configure(guest_factory: GuestFactory) -> None:
    await guest_factory()  # the known one works
    guest = await guest_factory(configure=False, deployment="nope")
    frame = await guest.configure()
    assert (frame["class"], frame["code"], frame["body"]) == ("string", 400, "Deployment not found")


@pytest.mark.parametrize(
    "config",
    [SimulatorConfig(allowed_deployments=frozenset({DEPLOYMENT}), unknown_deployment_mode="upgrade_403")],
)
async def test_unknown_deployment_fails_at_upgrade(guest_factory: GuestFactory) -> None:
    with pytest.raises(InvalidStatus) as info:
        await guest_factory(configure=False, deployment="nope")
    assert info.value.response.status_code == 403


@pytest.mark.parametrize("config", [SimulatorConfig(allowed_origins=frozenset({"https://app.example.com"}))])
async def test_origin_checked_at_upgrade(guest_factory: GuestFactory) -> None:
    with pytest.raises(InvalidStatus) as info:
        await guest_factory(origin="https://evil.example.com")
    assert info.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        await guest_factory()  # no Origin at all
    await guest_factory(origin="https://app.example.com")
    await guest_factory(origin="http://app.example.com:8443")  # host-only match by default


@pytest.mark.parametrize(
    "config", [SimulatorConfig(allowed_origins=frozenset({"app.example.com"}), origin_check="configure")]
)
async def test_origin_checked_at_configure(guest_factory: GuestFactory) -> None:
    guest = await guest_factory(configure=False, origin="https://evil.example.com")
    frame = await guest.configure()
    assert (frame["code"], frame["body"]) == (403, "HTTP authorization error")


async def test_exact_origin_match() -> None:
    cfg = SimulatorConfig(allowed_origins=frozenset({"https://app.example.com"}), origin_match="exact")
    async with Simulator(cfg) as sim, AsyncExitStack() as stack:
        await open_guest(sim, stack, origin="https://app.example.com")
        with pytest.raises(InvalidStatus):
            await open_guest(sim, stack, origin="http://app.example.com")


async def test_connection_rate_per_deployment() -> None:
    async with Simulator(SimulatorConfig(connections_per_min=2), clock=frozen_clock) as sim, AsyncExitStack() as stack:
        await open_guest(sim, stack, configure=False)
        await open_guest(sim, stack, configure=False)
        with pytest.raises(InvalidStatus) as info:
            await open_guest(sim, stack, configure=False)
        assert info.value.response.status_code == 429
        await open_guest(sim, stack, configure=False, deployment="another")  # counted per deployment


async def test_configure_rate_limit() -> None:
    async with Simulator(SimulatorConfig(configure_per_min=2), clock=frozen_clock) as sim, AsyncExitStack() as stack:
        guest = await open_guest(sim, stack)
        await guest.configure()
        frame = await guest.configure(tracing_id="t-3")
        assert frame["class"] == "TooManyRequestsErrorMessage"
        assert frame["code"] == 429
        assert "tracingId" not in frame
        assert frame["body"] == {
            "errorCode": 429,
            "errorMessage": "ConfigureSession rate too high for this session",
            "retryAfter": 3,
        }


async def test_lookups(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await guest.say("first words", channel={"metadata": {"customAttributes": {"bridge_session_id": "s1"}}})
    await sim.wait_received(guest.token, count=1)
    session = sim.session(guest.token)
    assert sim.session_by_attribute("bridge_session_id", "s1") is session
    assert sim.session_by_first_text("first words") is session
    assert sim.find_session(token=guest.token, deployment_id=DEPLOYMENT) is session
    assert sim.session(session.session_id) is session
    assert sim.nth_session(0) is session
    assert sim.sessions() == [session]
    assert re.fullmatch(r"sim-0-[0-9a-f]{8}", session.session_id)
    assert await sim.wait_session(attribute=("bridge_session_id", "s1")) is session
    with pytest.raises(KeyError):
        sim.session("unknown-token")


async def test_ended_sessions_are_retained_up_to_the_knob() -> None:
    async with (
        Simulator(SimulatorConfig(agent_script=False, retain_ended_sessions=1)) as sim,
        AsyncExitStack() as stack,
    ):
        guest = await open_guest(sim, stack)
        first = sim.session(guest.token)
        await guest.configure(start_new=True)
        assert sim.find_session(session_id=first.session_id) is first  # retained
        await guest.configure(start_new=True)
        assert sim.find_session(session_id=first.session_id) is None  # forgotten
        assert [s.index for s in sim.sessions()] == [1, 2]


async def test_requests_per_connection_limit() -> None:
    cfg = SimulatorConfig(agent_script=False, requests_per_connection_per_min=1)
    async with Simulator(cfg, clock=frozen_clock) as sim, AsyncExitStack() as stack:
        guest = await open_guest(sim, stack)  # the configure used the budget
        await guest.send("getJwt")
        frame = await guest.recv()
        assert (frame["class"], frame["body"]["errorCode"]) == ("TooManyRequestsErrorMessage", 4029)


async def test_wait_connections_and_lifecycle(guest_factory: GuestFactory, sim: Simulator) -> None:
    guest = await guest_factory()
    await guest_factory(guest.token)
    session = await sim.wait_connections(guest.token, 2, timeout_s=5)
    await guest.ws.close()
    assert await sim.wait_connections(session, 1, timeout_s=5) is session
    assert session.state is SessionState.ACTIVE  # closing a socket never ends the session (§4.9)
    fresh = Simulator()
    with pytest.raises(RuntimeError):
        _ = fresh.port
    await fresh.stop()  # idempotent, even before start


async def test_configure_for_another_deployment_than_the_url(guest_factory: GuestFactory) -> None:
    guest = await guest_factory(configure=False)
    await guest.send("configureSession", deploymentId="other")
    assert (await guest.recv())["body"] == "Deployment not found"
