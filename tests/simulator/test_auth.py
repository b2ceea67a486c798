"""Conformance: authenticated web messaging (§4.2): the token endpoints, configureAuthenticatedSession,
expired and revoked JWTs, LogoutEvent, the 4017 downgrade, journeyContext, and their control calls."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from typing import Any

import httpx
import pytest

from bridge.simulator import GenesysSessionState, Simulator, SimulatorConfig
from bridge.simulator.actions import SESSION_ACTIONS
from bridge.simulator.cli import build_parser, config_from_args
from bridge.simulator.engine import Engine
from tests.simulator.conftest import DEPLOYMENT, Guest, GuestFactory
from tests.simulator.test_virtual_time import RecordingSocket, _guest

AUTH = SimulatorConfig(agent_script=False, auth_enabled=True)
EXCHANGE = "/api/v2/webdeployments/token/oauthcodegrantjwtexchange"
REFRESH = "/api/v2/webdeployments/token/refresh"
REVOKE = "/api/v2/webdeployments/token/revoke"
JOURNEY = {"customer": {"id": "c-1", "idType": "cookie"}, "customerSession": {"id": "", "type": "web"}}


def _code_body(code: str) -> dict[str, Any]:
    return {"deploymentId": DEPLOYMENT, "oauth": {"code": code, "redirectUri": "https://app.example/cb"}}


async def _exchange(sim: Simulator, code: str = "code-1") -> tuple[str, str]:
    """The JWT and refresh token for an authorization code."""
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        response = await http.post(EXCHANGE, json=_code_body(code))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"jwt", "refreshToken"}
    return body["jwt"], body["refreshToken"]


async def _refresh(sim: Simulator, refresh_token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        return await http.post(REFRESH, json={"refreshToken": refresh_token, "deploymentId": DEPLOYMENT})


async def _revoke(sim: Simulator, jwt: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        return await http.delete(REVOKE, headers={"Authorization": f"bearer {jwt}"})


async def _configure_auth(guest: Guest, jwt: str, **fields: Any) -> dict[str, Any]:
    await guest.send(
        "configureAuthenticatedSession", deploymentId=DEPLOYMENT, tracingId="auth-1", data={"code": jwt}, **fields
    )
    return await guest.recv()


def _claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert isinstance(claims, dict)
    return claims


@pytest.mark.parametrize("config", [AUTH])
async def test_exchange_configure_and_send(sim: Simulator, guest_factory: GuestFactory) -> None:
    jwt, refresh_token = await _exchange(sim)
    claims = _claims(jwt)
    assert abs(claims["exp"] - (time.time() + 900)) < 60
    assert claims["sub"].startswith("sim-user-")
    assert refresh_token
    assert "." not in refresh_token
    guest = await guest_factory(configure=False)
    frame = await _configure_auth(guest, jwt, journeyContext=JOURNEY)
    assert (frame["class"], frame["code"], frame["tracingId"]) == ("SessionResponse", 200, "auth-1")
    assert frame["body"]["connected"] is True
    assert frame["body"]["newSession"] is True
    assert frame["body"]["authenticated"] is True
    session = sim.session(guest.token)
    assert session.authenticated
    assert session.identity is not None
    assert session.identity.identity_id == claims["sub"]
    assert session.journey_context == JOURNEY
    await guest.say("hello", tracing_id="m-1")
    echo = await guest.recv()
    assert (echo["class"], echo["body"]["text"], echo["tracingId"]) == ("StructuredMessage", "hello", "m-1")
    assert [r.text for r in sim.received(guest.token)] == ["hello"]


@pytest.mark.parametrize("config", [dataclasses.replace(AUTH, agent_script=True)])
async def test_autostart_join_works_for_authenticated_sessions(sim: Simulator, guest_factory: GuestFactory) -> None:
    jwt, _ = await _exchange(sim)
    guest = await guest_factory(configure=False)
    assert (await _configure_auth(guest, jwt))["body"]["newSession"] is True
    join = {"type": "Event", "events": [{"eventType": "Presence", "presence": {"type": "Join"}}]}
    await guest.send("onMessage", tracingId="join", message=join)
    echoed = await guest.recv()
    assert echoed["body"]["events"][0]["presence"]["type"] == "Join"
    greeting = await guest.recv_class("StructuredMessage")
    while greeting["body"].get("type") != "Text":
        greeting = await guest.recv_class("StructuredMessage")
    assert greeting["body"]["direction"] == "Outbound"
    assert sim.session(guest.token).conversation_id is not None


@pytest.mark.parametrize("config", [AUTH])
async def test_expired_jwt_refuses_requests_until_refreshed(sim: Simulator, guest_factory: GuestFactory) -> None:
    jwt, refresh_token = await _exchange(sim)
    guest = await guest_factory(configure=False)
    await _configure_auth(guest, jwt)
    await sim.expire_jwts(guest.token)

    await guest.say("lost", tracing_id="m-1")
    frame = await guest.recv()
    assert (frame["class"], frame["code"], frame["body"]) == ("string", 401, "User is unauthorized")
    assert "tracingId" not in frame  # error_tracing_id="never", like every other error frame
    await guest.send("getJwt", tracingId="j-1")
    assert (await guest.recv())["code"] == 401
    await guest.send("echo", tracingId="hc", message={"type": "Text", "text": "ping"})
    assert (await guest.recv())["class"] == "StructuredMessage"  # echo_needs_auth is off
    assert sim.received(guest.token) == []  # the refused message was not delivered
    assert (await _configure_auth(guest, jwt))["code"] == 401  # the expired JWT cannot configure either

    refreshed = await _refresh(sim, refresh_token)
    assert refreshed.status_code == 200
    assert refreshed.json()["refreshToken"] == refresh_token  # the same refresh token
    new_jwt = refreshed.json()["jwt"]
    assert new_jwt != jwt
    frame = await _configure_auth(guest, new_jwt)  # re-authenticate on the same connection
    assert (frame["class"], frame["body"]["newSession"], frame["body"]["authenticated"]) == (
        "SessionResponse",
        False,
        True,
    )
    await guest.say("delivered", tracing_id="m-2")
    assert (await guest.recv())["body"]["text"] == "delivered"
    assert [r.text for r in sim.received(guest.token)] == ["delivered"]


@pytest.mark.parametrize(
    "config", [dataclasses.replace(AUTH, echo_needs_auth=True, error_tracing_id="always", reconfigure_allowed=False)]
)
async def test_expiry_knobs(sim: Simulator, guest_factory: GuestFactory) -> None:
    jwt, refresh_token = await _exchange(sim)
    guest = await guest_factory(configure=False)
    await _configure_auth(guest, jwt)
    await sim.expire_jwts(guest.token)
    await guest.send("echo", tracingId="hc", message={"type": "Text", "text": "ping"})
    frame = await guest.recv()
    assert (frame["code"], frame["tracingId"]) == (401, "hc")
    new_jwt = (await _refresh(sim, refresh_token)).json()["jwt"]
    assert (await _configure_auth(guest, new_jwt))["code"] == 400  # reconfigure_allowed is off
    again = await guest_factory(guest.token, configure=False)  # a new connection may configure
    frame = await _configure_auth(again, new_jwt)
    assert (frame["class"], frame["body"]["newSession"]) == ("SessionResponse", False)


@pytest.mark.looptime
async def test_jwt_and_refresh_token_expire_in_virtual_time() -> None:
    loop = asyncio.get_running_loop()
    engine = Engine(AUTH, clock=loop.time, base_url=lambda: "http://sim", actions=SESSION_ACTIONS)
    issued, grant = engine.auth.exchange("d", "code-1")
    socket = RecordingSocket()
    conn = _guest(engine, socket)

    def send(action: str, **fields: Any) -> None:
        engine.handle_text(conn, json.dumps({"action": action, "token": "tok", "deploymentId": "d", **fields}))

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(conn.run_writer())
        send("configureAuthenticatedSession", data={"code": issued.jwt})
        assert (await socket.frames.get())["body"]["authenticated"] is True
        await asyncio.sleep(899)
        send("onMessage", message={"type": "Text", "text": "in time"})
        assert (await socket.frames.get())["body"]["text"] == "in time"
        await asyncio.sleep(1)  # 900 s after the exchange: jwt_ttl_s
        send("onMessage", message={"type": "Text", "text": "too late"})
        assert (await socket.frames.get())["code"] == 401
        refreshed = engine.auth.refresh(grant.refresh_token, None)
        assert refreshed is not None
        send("configureAuthenticatedSession", data={"code": refreshed[0].jwt})
        assert (await socket.frames.get())["body"]["newSession"] is False
        await asyncio.sleep(86_400 - 900)  # refresh_token_ttl_s after the exchange
        assert engine.auth.refresh(grant.refresh_token, None) is None
        conn.close()


@pytest.mark.parametrize("config", [AUTH])
async def test_revoke_sends_logout_event_to_every_connection(sim: Simulator, guest_factory: GuestFactory) -> None:
    jwt, refresh_token = await _exchange(sim)
    second_jwt, _ = await _exchange(sim)  # the same code again: the same customer, on another device
    assert _claims(second_jwt)["sub"] == _claims(jwt)["sub"]
    phone = await guest_factory(configure=False)
    await _configure_auth(phone, jwt)
    phone_too = await guest_factory(phone.token, configure=False)
    await _configure_auth(phone_too, jwt)
    laptop = await guest_factory(configure=False)
    await _configure_auth(laptop, second_jwt)
    bystander = await guest_factory()  # anonymous: not affected
    other_jwt, _ = await _exchange(sim, "someone-else")
    other = await guest_factory(configure=False)
    await _configure_auth(other, other_jwt)

    assert (await _revoke(sim, jwt)).status_code == 204
    for guest in (phone, phone_too, laptop):
        frame = await guest.recv()
        assert frame == {"type": "message", "class": "LogoutEvent", "code": 200, "body": {}}
        assert await guest.closed() == 1000
    for guest in (bystander, other):
        await guest.say("still here")
        assert (await guest.recv())["body"]["text"] == "still here"

    assert (await _refresh(sim, refresh_token)).status_code == 401
    assert (await _revoke(sim, jwt)).status_code == 401  # already revoked
    assert (await _revoke(sim, "not-a-jwt")).status_code == 401
    again = await guest_factory(phone.token, configure=False)
    frame = await _configure_auth(again, second_jwt)
    assert (frame["class"], frame["code"], frame["body"]) == ("string", 403, "Session authentication failed")

    fresh_jwt, _ = await _exchange(sim)  # logging in again: the same customer resumes its session
    frame = await _configure_auth(again, fresh_jwt)
    assert (frame["class"], frame["body"]["newSession"]) == ("SessionResponse", False)


@pytest.mark.parametrize("config", [dataclasses.replace(AUTH, close_on_logout=False)])
async def test_control_logout(sim: Simulator, guest_factory: GuestFactory) -> None:
    jwt, refresh_token = await _exchange(sim)
    guest = await guest_factory(configure=False)
    await _configure_auth(guest, jwt)
    assert await sim.logout(guest.token) == 1
    assert (await guest.recv())["class"] == "LogoutEvent"
    await guest.say("after logout")  # close_on_logout is off: the socket stays, the request is refused
    assert (await guest.recv())["code"] == 403
    assert sim.received(guest.token) == []
    assert (await _refresh(sim, refresh_token)).status_code == 401
    anonymous = await guest_factory()
    with pytest.raises(ValueError, match="not authenticated"):
        await sim.logout(anonymous.token)


@pytest.mark.parametrize("config", [dataclasses.replace(AUTH, refused_auth_codes=frozenset({"bad-code"}))])
async def test_exchange_refusals(sim: Simulator) -> None:
    await sim.refuse_auth_code("refused-later")
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        for code in ("bad-code", "refused-later"):
            refused = await http.post(EXCHANGE, json=_code_body(code))
            assert refused.status_code == 401
            assert refused.json()["status"] == 401
            assert refused.json()["message"]
        implicit = {"deploymentId": DEPLOYMENT, "oauth": {"idToken": "id-token", "nonce": "n-1"}}
        assert (await http.post(EXCHANGE, json=implicit)).status_code == 200
        pkce = _code_body("pkce")
        pkce["oauth"]["codeVerifier"] = "verifier"
        assert (await http.post(EXCHANGE, json=pkce)).status_code == 200
        malformed: list[Any] = [
            [],
            {"oauth": {"code": "c", "redirectUri": "r"}},
            {"deploymentId": DEPLOYMENT},
            {"deploymentId": DEPLOYMENT, "oauth": {"code": "c"}},
            {"deploymentId": DEPLOYMENT, "oauth": {"idToken": "t"}},
            {"deploymentId": DEPLOYMENT, "oauth": {}},
        ]
        for body in malformed:
            response = await http.post(EXCHANGE, json=body)
            assert response.status_code == 400, body
            assert response.json()["message"]
        assert (await http.post(EXCHANGE, content=b"not json")).status_code == 400
        assert (await http.post(REFRESH, json={})).status_code == 400
        assert (await http.post(REFRESH, json={"refreshToken": "unknown"})).status_code == 401


async def test_auth_off_by_default(sim: Simulator, guest_factory: GuestFactory) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        assert (await http.post(EXCHANGE, json=_code_body("c"))).status_code == 403
        config = (await http.get(f"/webdeployments/v1/deployments/{DEPLOYMENT}/config.json")).json()
    assert config["auth"] == {"enabled": False, "allowSessionUpgrade": False}
    guest = await guest_factory(configure=False)
    frame = await _configure_auth(guest, "any")
    assert (frame["code"], frame["body"]) == (403, "Turn on the Feature Toggle or fix the configuration.")


@pytest.mark.parametrize("config", [AUTH])
async def test_config_json_reports_auth(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        config = (await http.get(f"/webdeployments/v1/deployments/{DEPLOYMENT}/config.json")).json()
    assert config["auth"]["enabled"] is True


@pytest.mark.parametrize("config", [AUTH])
async def test_configure_with_a_bad_jwt(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory(configure=False)
    frame = await _configure_auth(guest, "not.a.jwt")
    assert (frame["class"], frame["code"], frame["body"]) == ("string", 403, "Session authentication failed")
    await guest.send("configureAuthenticatedSession", deploymentId=DEPLOYMENT, data={})
    assert (await guest.recv())["code"] == 4020
    await guest.say("nope")
    assert (await guest.recv())["code"] == 4007  # nothing was configured


@pytest.mark.parametrize("config", [AUTH])
async def test_failing_refresh(sim: Simulator) -> None:
    _, refresh_token = await _exchange(sim)
    await sim.fail_next_refresh(2)
    assert (await _refresh(sim, refresh_token)).status_code == 401
    assert (await _refresh(sim, refresh_token)).status_code == 401
    assert (await _refresh(sim, refresh_token)).status_code == 200


@pytest.mark.parametrize("config", [dataclasses.replace(AUTH, fail_next_refreshes=1)])
async def test_failing_refresh_from_config(sim: Simulator) -> None:
    _, refresh_token = await _exchange(sim)
    assert (await _refresh(sim, refresh_token)).status_code == 401
    assert (await _refresh(sim, refresh_token)).status_code == 200


@pytest.mark.parametrize("config", [AUTH])
async def test_an_authenticated_token_cannot_downgrade(sim: Simulator, guest_factory: GuestFactory) -> None:
    jwt, _ = await _exchange(sim)
    guest = await guest_factory(configure=False)
    await _configure_auth(guest, jwt)
    for start_new in (None, True):
        anonymous = await guest_factory(guest.token, configure=False)
        frame = await anonymous.configure(start_new=start_new)
        assert (frame["class"], frame["code"]) == ("string", 4017)
        assert frame["body"] == "Cannot downgrade an authenticated session to unauthenticated"
    assert (await guest.configure())["code"] == 4017  # on the authenticated connection too
    assert sim.session(guest.token).authenticated
    await guest.say("still authenticated")
    assert (await guest.recv())["body"]["text"] == "still authenticated"


@pytest.mark.parametrize("config", [dataclasses.replace(AUTH, auth_required=True)])
async def test_auth_required_refuses_anonymous_sessions(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory(configure=False)
    frame = await guest.configure()
    assert (frame["code"], frame["body"]) == (403, "Authentication is required for this deployment")
    jwt, _ = await _exchange(sim)
    assert (await _configure_auth(guest, jwt))["class"] == "SessionResponse"


@pytest.mark.parametrize("config", [AUTH])
async def test_another_customer_on_the_same_token_gets_a_new_session(
    sim: Simulator, guest_factory: GuestFactory
) -> None:
    anonymous = await guest_factory()
    first = sim.session(anonymous.token)
    jwt, _ = await _exchange(sim, "alice")
    frame = await _configure_auth(anonymous, jwt)
    assert frame["body"]["newSession"] is True  # allow_session_upgrade is off: no step-up in place
    assert first.state is GenesysSessionState.REPLACED
    alice = sim.session(anonymous.token)
    bob_jwt, _ = await _exchange(sim, "bob")
    assert (await _configure_auth(anonymous, bob_jwt))["body"]["newSession"] is True
    assert alice.state is GenesysSessionState.REPLACED
    assert sim.session(anonymous.token).identity is not alice.identity


@pytest.mark.parametrize("config", [dataclasses.replace(AUTH, allow_session_upgrade=True)])
async def test_session_upgrade_keeps_the_session(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    anonymous = sim.session(guest.token)
    await guest.say("before")
    await guest.recv()
    jwt, _ = await _exchange(sim)
    frame = await _configure_auth(guest, jwt)
    assert (frame["body"]["newSession"], frame["body"]["authenticated"]) == (False, True)
    assert sim.session(guest.token) is anonymous
    assert anonymous.authenticated
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        config = (await http.get(f"/webdeployments/v1/deployments/{DEPLOYMENT}/config.json")).json()
    assert config["auth"]["allowSessionUpgrade"] is True


async def test_journey_context_is_stored(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory(configure=False)
    await guest.send("configureSession", deploymentId=DEPLOYMENT, journeyContext=JOURNEY)
    assert (await guest.recv())["class"] == "SessionResponse"
    session = sim.session(guest.token)
    assert session.journey_context == JOURNEY
    assert not session.authenticated
    await guest.configure()  # a configure without one keeps it
    assert session.journey_context == JOURNEY
    async with httpx.AsyncClient(base_url=sim.base_url + "/control") as http:
        info = (await http.post("/session", json={"token": guest.token})).json()
    assert (info["journeyContext"], info["authenticated"], info["identityId"]) == (JOURNEY, False, None)


@pytest.mark.parametrize("config", [AUTH])
async def test_auth_control_over_http(sim: Simulator, guest_factory: GuestFactory) -> None:
    jwt, refresh_token = await _exchange(sim)
    guest = await guest_factory(configure=False)
    await _configure_auth(guest, jwt)
    async with httpx.AsyncClient(base_url=sim.base_url + "/control") as http:
        info = (await http.post("/session", json={"token": guest.token})).json()
        assert info["authenticated"] is True
        assert info["identityId"] == _claims(jwt)["sub"]
        assert (await http.post("/expire_jwts", json={"token": guest.token})).json() == {}
        await guest.say("expired")
        assert (await guest.recv())["code"] == 401
        assert (await http.post("/fail_next_refresh", json={"count": 1})).json() == {}
        assert (await _refresh(sim, refresh_token)).status_code == 401
        assert (await http.post("/refuse_auth_code", json={"code": "nope"})).json() == {}
        assert (await http.post("/refuse_auth_code", json={})).status_code == 400
        assert (await http.post("/logout", json={"token": guest.token})).json() == {"logged_out": 1}
        assert (await guest.recv())["class"] == "LogoutEvent"
        assert await guest.closed() == 1000
        anonymous = await guest_factory()
        assert (await http.post("/logout", json={"token": anonymous.token})).status_code == 400
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        assert (await http.post(EXCHANGE, json=_code_body("nope"))).status_code == 401


def test_command_line_auth_flag() -> None:
    parser = build_parser()
    assert config_from_args(parser.parse_args(["--auth"])).auth_enabled is True
    assert config_from_args(parser.parse_args([])).auth_enabled is False
