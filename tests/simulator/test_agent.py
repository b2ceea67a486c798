"""Conformance: the scripted agent/bot (§12): typing first, then text or rich content, and a disconnect on request."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from bridge.simulator import Simulator, SimulatorConfig
from tests.simulator.conftest import Guest, GuestFactory

AGENT = SimulatorConfig(message_rate_per_s=None)
#: The agent on a deployment with every optional feature on (Disconnect type ReadOnly).
AGENT_ALL_ON = dataclasses.replace(SimulatorConfig.everything_on(), message_rate_per_s=None)


async def _exchange(guest: Guest, text: str) -> list[dict[str, Any]]:
    """Say ``text``; return the agent's Outbound bodies after the echo and the Typing event."""
    await guest.say(text, tracing_id="t")
    echo = await guest.recv()
    assert echo["tracingId"] == "t"
    typing = (await guest.recv())["body"]
    assert typing["direction"] == "Outbound"
    assert typing["events"] == [{"eventType": "Typing", "typing": {"type": "On", "duration": 5000}}]
    assert typing["originatingEntity"] == "Bot"
    return [(await guest.recv())["body"]]


@pytest.mark.parametrize("config", [AGENT])
async def test_plain_text_reply(guest_factory: GuestFactory) -> None:
    [reply] = await _exchange(await guest_factory(), "hello there")
    assert (reply["type"], reply["text"], reply["direction"]) == ("Text", "You said: hello there", "Outbound")
    assert reply["channel"]["from"]["nickname"] == "Sim Bot"


@pytest.mark.parametrize("config", [AGENT])
async def test_quick_replies_card_carousel_date(guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    [quick] = await _exchange(guest, "give me quick options")
    assert quick["type"] == "Structured"
    assert [c["quickReply"]["payload"] for c in quick["content"]] == ["yes", "no", "human"]
    [card] = await _exchange(guest, "a card please")
    assert card["content"][0]["card"]["actions"][0] == {
        "type": "Postback",
        "text": "Choose Plan A",
        "payload": "plan_a",
    }
    [carousel] = await _exchange(guest, "carousel")
    assert len(carousel["content"][0]["carousel"]["cards"]) == 2
    [date] = await _exchange(guest, "pick a date")
    picker = date["content"][0]["datePicker"]
    assert len(picker["availableTimes"]) == 3
    assert picker["availableTimes"][0]["duration"] == 1800


@pytest.mark.parametrize("config", [AGENT])
async def test_attachment_reply_is_downloadable(guest_factory: GuestFactory) -> None:
    [reply] = await _exchange(await guest_factory(), "send an attachment")
    item = reply["content"][0]["attachment"]
    assert (item["mediaType"], item["mime"]) == ("Image", "image/png")
    async with httpx.AsyncClient() as http:
        response = await http.get(item["url"])
    assert response.headers["content-type"] == "image/png"
    assert len(response.content) == item["fileSize"]


@pytest.mark.parametrize("config", [AGENT])
async def test_button_response_is_acknowledged(guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    button = {
        "contentType": "ButtonResponse",
        "buttonResponse": {"type": "QuickReply", "text": "Yes", "payload": "yes"},
    }
    await guest.say("", content=[button], tracing_id="b")
    assert (await guest.recv())["body"]["content"] == [button]
    await guest.recv()  # typing
    assert (await guest.recv())["body"]["text"] == "You chose: Yes (yes)"


@pytest.mark.parametrize("config", [AGENT_ALL_ON])
async def test_bye_disconnects_read_only(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    [goodbye] = await _exchange(guest, "ok bye")
    assert goodbye["text"] == "Goodbye!"
    disconnect = (await guest.recv())["body"]
    assert disconnect["events"] == [{"eventType": "Presence", "presence": {"type": "Disconnect"}}]
    assert disconnect["metadata"]["readOnly"] == "true"
    assert sim.session(guest.token).read_only
    await guest.say("hello?")
    assert (await guest.recv())["code"] == 409


@pytest.mark.parametrize("config", [dataclasses.replace(AGENT_ALL_ON, disconnect_mode="send")])
async def test_bye_in_send_mode(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await _exchange(guest, "bye")
    disconnect = (await guest.recv())["body"]
    assert "readOnly" not in disconnect["metadata"]
    assert not sim.session(guest.token).read_only


@pytest.mark.parametrize("config", [AGENT])
async def test_bye_on_a_real_deployment_sends_no_disconnect(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    [goodbye] = await _exchange(guest, "bye")
    assert goodbye["text"] == "Goodbye!"
    assert sim.session(guest.token).conversation_id is None  # the conversation ended silently (§5.3)
    [reply] = await _exchange(guest, "hello again")  # no Disconnect frame came in between, no 409
    assert reply["text"] == "You said: hello again"
    assert sim.session(guest.token).conversation_id is not None


@pytest.mark.parametrize("config", [dataclasses.replace(AGENT_ALL_ON, disconnect_overtakes_last_message="late")])
async def test_bye_with_the_disconnect_overtaking_the_goodbye(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await guest.say("bye", tracing_id="t")
    await guest.recv()  # echo
    await guest.recv()  # typing
    disconnect, goodbye = (await guest.recv())["body"], (await guest.recv())["body"]
    assert disconnect["events"] == [{"eventType": "Presence", "presence": {"type": "Disconnect"}}]
    assert goodbye["text"] == "Goodbye!"
    assert [m["id"] for m in sim.history(guest.token)][-2:] == [goodbye["id"], disconnect["id"]]


@pytest.mark.parametrize("config", [AGENT])
async def test_join_gets_a_greeting(guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    join = {"type": "Event", "events": [{"eventType": "Presence", "presence": {"type": "Join"}}]}
    await guest.send("onMessage", message=join)
    assert (await guest.recv())["body"]["events"] == join["events"]
    assert (await guest.recv())["body"]["events"][0]["eventType"] == "Typing"
    assert (await guest.recv())["body"]["text"].startswith("Hi! I am the simulator bot")


@pytest.mark.parametrize("config", [SimulatorConfig(message_rate_per_s=None, agent_reply_delay_s=0.01)])
async def test_delayed_reply(guest_factory: GuestFactory) -> None:
    [reply] = await _exchange(await guest_factory(), "hi")
    assert reply["text"] == "You said: hi"
