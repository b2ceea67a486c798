"""Conformance: getJwt + REST history (§4.5, §9), attachments (§4.6), deployment config.json (§2.2)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bridge.simulator import Simulator, SimulatorConfig
from tests.simulator.conftest import DEPLOYMENT, Guest, GuestFactory


async def _jwt(guest: Guest) -> str:
    await guest.send("getJwt", tracingId="j-1")
    frame = await guest.recv_class("JwtResponse")
    assert (frame["class"], frame["tracingId"]) == ("JwtResponse", "j-1")
    assert isinstance(frame["body"]["exp"], int)
    jwt = frame["body"]["jwt"]
    assert isinstance(jwt, str)
    return jwt


@pytest.mark.parametrize("config", [SimulatorConfig(agent_script=False, message_rate_per_s=None)])
async def test_history_pages_newest_first(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    for n in range(3):
        await guest.say(f"guest {n}", tracing_id=str(n))
        assert (await guest.recv())["tracingId"] == str(n)
    await sim.agent_typing(guest.token)  # never in history
    await sim.add_history(guest.token, "while you were away")
    await sim.add_history(guest.token, "still away")
    jwt = await _jwt(guest)
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        headers = {"Authorization": f"Bearer {jwt}"}
        first = (await http.get("/api/v2/webmessaging/messages", params={"pageSize": 2}, headers=headers)).json()
        assert (first["pageSize"], first["pageNumber"], first["total"], first["pageCount"]) == (2, 1, 5, 3)
        assert [e["text"] for e in first["entities"]] == ["still away", "while you were away"]
        assert first["entities"][0]["direction"] == "Outbound"
        third = await http.get(
            "/api/v2/webmessaging/messages", params={"pageSize": 2, "pageNumber": 3}, headers=headers
        )
        assert [e["text"] for e in third.json()["entities"]] == ["guest 0"]
        assert third.json()["entities"][0]["direction"] == "Inbound"
        beyond = await http.get(
            "/api/v2/webmessaging/messages", params={"pageSize": 2, "pageNumber": 4}, headers=headers
        )
        assert beyond.json()["entities"] == []
        default = (await http.get("/api/v2/webmessaging/messages", headers=headers)).json()
        assert (default["pageSize"], len(default["entities"])) == (25, 5)


async def test_history_requires_a_valid_jwt(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    jwt = await _jwt(guest)
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        assert (await http.get("/api/v2/webmessaging/messages")).status_code == 401
        bad = await http.get("/api/v2/webmessaging/messages", headers={"Authorization": f"Bearer {jwt}x"})
        assert bad.status_code == 401
        assert bad.json()["status"] == 401
        token = await http.get("/api/v2/webmessaging/messages", headers={"Authorization": f"Bearer {guest.token}"})
        assert token.status_code == 401  # the session token is not a bearer token (§11.9)


@pytest.mark.parametrize("config", [SimulatorConfig(agent_script=False, jwt_ttl_s=0)])
async def test_expired_jwt_is_refused(sim: Simulator, guest_factory: GuestFactory) -> None:
    jwt = await _jwt(await guest_factory())
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        response = await http.get("/api/v2/webmessaging/messages", headers={"Authorization": f"Bearer {jwt}"})
        assert response.status_code == 401


@pytest.mark.parametrize("config", [SimulatorConfig(agent_script=False, history_per_min=1)])
async def test_history_rate_limit(sim: Simulator, guest_factory: GuestFactory) -> None:
    jwt = await _jwt(await guest_factory())
    async with httpx.AsyncClient(base_url=sim.base_url, headers={"Authorization": f"Bearer {jwt}"}) as http:
        assert (await http.get("/api/v2/webmessaging/messages")).status_code == 200
        limited = await http.get("/api/v2/webmessaging/messages")
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "3"


async def _presign(guest: Guest, **fields: Any) -> dict[str, Any]:
    await guest.send("onAttachment", tracingId="a-1", errorsAsJson=True, **fields)
    return await guest.recv()


async def test_attachment_full_flow(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    other = await guest_factory(guest.token)
    data = b"\x89PNG fake image bytes"
    frame = await _presign(
        guest, attachmentId="att-1", fileName="receipt.png", fileType="image/png", fileSize=len(data)
    )
    assert (frame["class"], frame["tracingId"]) == ("PresignedUrlResponse", "a-1")
    body = frame["body"]
    assert (body["attachmentId"], body["fileName"], body["fileType"], body["fileSize"]) == (
        "att-1",
        "receipt.png",
        "image/png",
        len(data),
    )
    assert set(body["headers"]) == {"x-amz-tagging"}
    async with httpx.AsyncClient() as http:
        refused = await http.put(body["url"], content=data, headers={"Content-Type": "image/png"})
        assert refused.status_code == 403
        put = await http.put(body["url"], content=data, headers={**body["headers"], "Content-Type": "image/png"})
        assert put.status_code == 200
        for g in (guest, other):
            success = await g.recv()
            assert (success["type"], success["class"]) == ("message", "UploadSuccessEvent")
            assert success["body"]["attachmentId"] == "att-1"
        assert (await http.get(success["body"]["downloadUrl"])).content == data

        await guest.send("getAttachment", attachmentId="att-1", tracingId="g-1")
        refresh = await guest.recv()
        assert refresh["class"] == "PresignedUrlResponse"
        assert (refresh["body"]["headers"], refresh["body"]["fileSize"]) == ({}, len(data))

        content = [{"contentType": "Attachment", "attachment": {"id": "att-1"}}]
        await guest.say("my receipt", tracing_id="m-a", content=content)
        echo = await guest.recv()
        item = echo["body"]["content"][0]["attachment"]
        assert (item["id"], item["filename"], item["mediaType"], item["mime"]) == (
            "att-1",
            "receipt.png",
            "Image",
            "image/png",
        )
        assert (await http.get(item["url"])).content == data

    await guest.send("deleteAttachment", attachmentId="att-1")
    assert (await guest.recv())["code"] == 4009  # already sent


async def test_delete_uploaded_attachment(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    body = (await _presign(guest, attachmentId="att-2", fileName="a.txt", fileType="text/plain", fileSize=2))["body"]
    async with httpx.AsyncClient() as http:
        await http.put(body["url"], content=b"hi", headers=body["headers"])
    await guest.recv_class("UploadSuccessEvent")
    await guest.send("deleteAttachment", attachmentId="att-2", tracingId="d")
    deleted = await guest.recv()
    assert (deleted["class"], deleted["body"]) == ("AttachmentDeletedResponse", {"attachmentId": "att-2"})
    await guest.say("", content=[{"contentType": "Attachment", "attachment": {"id": "att-2"}}])
    assert (await guest.recv())["code"] == 4010


@pytest.mark.parametrize(
    ("file_name", "file_type", "size", "code"),
    [
        ("tool.exe", "image/png", 10, 4001),  # blocked extension
        ("movie.mp4", "video/mp4", 10, 4001),  # type not in the profile
        ("big.png", "image/png", 10 * 1024 * 1024 + 1, 4002),
        ("noextension", "image/png", 10, 4004),
    ],
)
async def test_presign_refusals(
    guest_factory: GuestFactory, file_name: str, file_type: str, size: int, code: int
) -> None:
    guest = await guest_factory()
    frame = await _presign(guest, attachmentId="x", fileName=file_name, fileType=file_type, fileSize=size)
    assert (frame["type"], frame["class"], frame["code"]) == ("message", "GenerateUrlError", 200)
    assert (frame["body"]["attachmentId"], frame["body"]["errorCode"]) == ("x", code)


async def test_message_with_unuploaded_attachment_4010(guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await _presign(guest, attachmentId="p", fileName="a.png", fileType="image/png", fileSize=3)
    await guest.say("", content=[{"contentType": "Attachment", "attachment": {"id": "p"}}], tracing_id="u")
    frame = await guest.recv()
    assert frame["code"] == 4010


async def test_upload_failures(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    virus = (await _presign(guest, attachmentId="v", fileName="virus.pdf", fileType="application/pdf", fileSize=3))[
        "body"
    ]
    async with httpx.AsyncClient() as http:
        assert (await http.put(virus["url"], content=b"bad", headers=virus["headers"])).status_code == 200
        failure = await guest.recv()
        assert (failure["class"], failure["body"]["errorCode"]) == ("UploadFailureEvent", 4003)
        assert (await http.put(virus["url"], content=b"bad", headers=virus["headers"])).status_code == 409


@pytest.mark.parametrize("config", [SimulatorConfig(agent_script=False, max_file_size_kb=1)])
async def test_upload_larger_than_declared_limit(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    body = (await _presign(guest, attachmentId="b", fileName="b.txt", fileType="text/plain", fileSize=10))["body"]
    async with httpx.AsyncClient() as http:
        response = await http.put(body["url"], content=b"x" * 2048, headers=body["headers"])
    assert response.status_code == 400
    failure = await guest.recv()
    assert (failure["class"], failure["body"]["errorCode"]) == ("UploadFailureEvent", 4002)


async def test_get_configuration(guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await guest.send("getConfiguration", deploymentId=DEPLOYMENT, tracingId="cfg")
    frame = await guest.recv()
    assert frame["class"] == "GetConfigurationResponse"
    assert frame["body"]["maxCustomDataBytes"] == 2048


@pytest.mark.parametrize(
    "config", [SimulatorConfig(agent_script=False, disconnect_enabled=True, disconnect_mode="send", autostart=True)]
)
async def test_deployment_config_json(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        config = (await http.get(f"/webdeployments/v1/deployments/{DEPLOYMENT}/config.json")).json()
    conversations = config["messenger"]["apps"]["conversations"]
    assert conversations["messagingEndpoint"] == sim.base_url.replace("http", "ws", 1)
    assert conversations["conversationDisconnect"] == {"enabled": True, "type": "Send"}
    assert conversations["showUserTypingIndicator"] is False
    assert conversations["autoStart"] == {"enabled": True}
    assert config["messenger"]["fileUpload"]["modes"][0]["maxFileSizeKB"] == 10240
    assert config["status"] == "Active"
