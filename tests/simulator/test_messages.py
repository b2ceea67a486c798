"""Conformance: onMessage echo and limits, read-only, presence, typing, echo, fault injection (§4.3–§4.4, §8, §12)."""

from __future__ import annotations

import dataclasses
import json
import re
from contextlib import AsyncExitStack
from datetime import datetime

import pytest

from bridge.simulator import GenesysSessionState, Simulator, SimulatorConfig
from tests.simulator.conftest import EVERYTHING_ON, GuestFactory, frozen_clock, open_guest

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def test_echo_fans_out_to_every_connection(sim: Simulator, guest_factory: GuestFactory) -> None:
    a = await guest_factory()
    b = await guest_factory(a.token)
    await a.say("My order has not arrived", tracing_id="m-42")
    echo_a, echo_b = await a.recv(), await b.recv()
    assert echo_a == echo_b
    assert echo_a["type"] == "message"
    assert echo_a["class"] == "StructuredMessage"
    assert echo_a["tracingId"] == "m-42"
    body = echo_a["body"]
    assert re.fullmatch(r"[0-9a-f]{32}", body["id"])
    assert body["direction"] == "Inbound"
    assert body["type"] == "Text"
    assert body["text"] == "My order has not arrived"
    assert ISO_MS.fullmatch(body["channel"]["time"])
    [received] = sim.received(a.token)
    assert received.id == body["id"]
    assert received.tracing_id == "m-42"


async def test_text_limit_4011(guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await guest.say("é" * 2048, tracing_id="ok")  # exactly 4096 bytes
    assert (await guest.recv())["tracingId"] == "ok"
    await guest.say("é" * 2049, tracing_id="long")
    frame = await guest.recv()
    assert (frame["code"], frame["body"]) == (4011, "Message length 4098 is larger than 4096")
    assert "tracingId" not in frame  # real error frames carry none (§6)


async def test_custom_attributes_limit_4013(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    too_big = {"k": "v" * 2048}  # 2049 bytes
    await guest.say("hi", channel={"metadata": {"customAttributes": too_big}})
    frame = await guest.recv()
    assert (frame["code"], frame["body"]) == (4013, "Custom Attributes in channel metadata is larger than 2048 bytes")
    # Java puts channel at the request's top level; both places are accepted (§4.3a, §12).
    await guest.send(
        "onMessage",
        message={"type": "Text", "text": "hi"},
        channel={"metadata": {"customAttributes": {"orderId": "A-991"}}},
    )
    echo = await guest.recv()
    assert echo["body"]["channel"]["metadata"]["customAttributes"] == {"orderId": "A-991"}
    assert sim.session(guest.token).custom_attributes == {"orderId": "A-991"}


async def test_message_rate_429() -> None:
    async with Simulator(SimulatorConfig(agent_script=False), clock=frozen_clock) as sim, AsyncExitStack() as stack:
        guest = await open_guest(sim, stack)
        await guest.say("one", tracing_id="1")
        await guest.say("two", tracing_id="2")
        await guest.say("three", tracing_id="3")
        assert [(await guest.recv())["tracingId"] for _ in range(2)] == ["1", "2"]
        frame = await guest.recv()
        assert frame["class"] == "TooManyRequestsErrorMessage"
        assert (frame["type"], frame["code"]) == ("response", 429)
        assert "tracingId" not in frame
        assert frame["body"] == {
            "errorCode": 4029,
            "errorMessage": "Message rate too high for this session",
            "retryAfter": 3,
        }
        assert len(sim.received(guest.token)) == 2


@pytest.mark.parametrize("config", [EVERYTHING_ON])
async def test_read_only_after_disconnect_then_start_new(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await sim.disconnect(guest.token, read_only=True)
    frame = await guest.recv()
    body = frame["body"]
    assert (frame["class"], body["type"], body["direction"]) == ("StructuredMessage", "Event", "Outbound")
    assert body["events"] == [{"eventType": "Presence", "presence": {"type": "Disconnect"}}]
    assert body["metadata"]["readOnly"] == "true"
    await guest.say("anyone?", tracing_id="ro")
    frame = await guest.recv()
    assert (frame["code"], frame["body"], frame["tracingId"]) == (
        409,
        "Session is read-only, no new messages allowed",
        "ro",
    )
    assert (await guest.configure())["body"]["readOnly"] is True
    await guest.send("closeSession", closeAllConnections=True)
    closed = await guest.recv()
    assert closed["body"]["connected"] is False
    assert closed["body"]["readOnly"] is True
    fresh = await guest.configure(start_new=True)
    assert (fresh["body"]["newSession"], fresh["body"]["readOnly"]) == (True, False)
    await guest.say("new chat")
    assert (await guest.recv())["body"]["text"] == "new chat"


@pytest.mark.parametrize("config", [dataclasses.replace(EVERYTHING_ON, disconnect_mode="send")])
async def test_send_mode_disconnect_keeps_session_writable(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await guest.say("hello")
    await guest.recv()
    conversation = sim.session(guest.token).conversation_id
    await sim.disconnect(guest.token)  # conversationDisconnect type Send (§5.3)
    frame = await guest.recv()
    assert frame["body"]["events"] == [{"eventType": "Presence", "presence": {"type": "Disconnect"}}]
    assert "readOnly" not in frame["body"]["metadata"]
    assert sim.session(guest.token).conversation_id is None
    await guest.say("again", tracing_id="again")
    echo = await guest.recv()
    assert (echo["tracingId"], echo["body"]["text"]) == ("again", "again")  # writable: no 409
    assert sim.session(guest.token).conversation_id not in (None, conversation)  # a new conversation
    assert (await guest.configure())["body"]["readOnly"] is False


async def test_presence_join_echoes_and_starts_conversation(sim: Simulator, guest_factory: GuestFactory) -> None:
    a = await guest_factory()
    b = await guest_factory(a.token)
    join = {"type": "Event", "events": [{"eventType": "Presence", "presence": {"type": "Join"}}]}
    await a.send("onMessage", tracingId="j", message=join)
    for guest in (a, b):
        frame = await guest.recv()
        assert frame["tracingId"] == "j"
        assert frame["body"]["events"] == join["events"]
        assert frame["body"]["direction"] == "Inbound"
    assert sim.session(a.token).conversation_id is not None


@pytest.mark.parametrize("config", [EVERYTHING_ON])
async def test_presence_clear(sim: Simulator, guest_factory: GuestFactory) -> None:
    a = await guest_factory()
    b = await guest_factory(a.token)
    session = sim.session(a.token)
    clear = {"type": "Event", "events": [{"eventType": "Presence", "presence": {"type": "Clear"}}]}
    await a.send("onMessage", tracingId="clr", message=clear)
    response = await a.recv()
    assert (response["type"], response["code"], response["tracingId"]) == ("response", 200, "clr")
    for guest in (a, b):
        assert (await guest.recv_class("SessionClearedEvent"))["body"] == {}
        assert (await guest.recv())["class"] == "ConnectionClosedEvent"
        assert await guest.closed() == 1000
    assert session.state is GenesysSessionState.CLEARED
    assert sim.find_session(token=a.token) is None  # a new configure makes a new session
    assert sim.session(a.token) is session  # but tests can still read what it received


async def test_presence_clear_is_off_by_default(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    clear = {"type": "Event", "events": [{"eventType": "Presence", "presence": {"type": "Clear"}}]}
    await guest.send("onMessage", tracingId="clr", message=clear)
    frame = await guest.recv()
    assert (frame["class"], frame["code"], frame["body"]) == (
        "string",
        403,
        "Presence events Conversation Clear are not supported",
    )
    assert "tracingId" not in frame
    assert sim.session(guest.token).active  # nothing was cleared


TYPING = {"type": "Event", "events": [{"eventType": "Typing", "typing": {"type": "On"}}]}


async def test_typing_is_off_by_default_403(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await guest.send("onMessage", tracingId="ty", message=TYPING)
    frame = await guest.recv()
    assert (frame["class"], frame["code"], frame["body"]) == (
        "string",
        403,
        "Turn on the Feature Toggle or fix the configuration.",
    )
    assert "tracingId" not in frame
    assert sim.received(guest.token) == []


@pytest.mark.parametrize("config", [EVERYTHING_ON])
async def test_typing_is_received_not_echoed_and_not_in_history(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await guest.send("onMessage", message=TYPING)
    [typing] = await sim.wait_received(guest.token, count=1)
    assert typing.events[0]["eventType"] == "Typing"
    assert sim.history(guest.token) == []
    await guest.say("after typing", tracing_id="next")
    assert (await guest.recv())["tracingId"] == "next"  # no typing echo came first


@pytest.mark.parametrize("config", [dataclasses.replace(EVERYTHING_ON, echo_own_typing=True)])
async def test_typing_echo_knob(guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await guest.send("onMessage", tracingId="ty", message=TYPING)
    frame = await guest.recv()
    assert frame["tracingId"] == "ty"
    assert frame["body"]["events"][0]["eventType"] == "Typing"


async def test_echo_health_check_and_its_limit(guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    for n in range(2):
        await guest.send("echo", tracingId=f"hc-{n}", message={"type": "Text", "text": "ping"})
        frame = await guest.recv()
        assert (frame["type"], frame["class"], frame["tracingId"]) == ("response", "StructuredMessage", f"hc-{n}")
        body = frame["body"]
        assert (body["text"], body["direction"]) == ("ping", "Inbound")
        assert body["metadata"]["durationSeconds"] == "259200"
        assert body["metadata"]["expirationDate"].isdigit()
    await guest.send("echo", tracingId="hc-2", message={"type": "Text", "text": "ping"})
    frame = await guest.recv()
    assert (frame["code"], frame["class"], frame["body"]["retryAfter"]) == (429, "TooManyRequestsErrorMessage", 3)


async def test_invalid_message_type_400(guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await guest.send("onMessage", message={"type": "Receipt-ish", "text": "x"})
    assert (await guest.recv())["code"] == 400


async def test_agent_say_and_typing_via_python_control(sim: Simulator, guest_factory: GuestFactory) -> None:
    a = await guest_factory()
    b = await guest_factory(a.token)
    await sim.agent_typing(a.token)
    message_id = await sim.agent_say(a.token, "Hello, I am Ann", nickname="Ann", originating_entity="Human")
    for guest in (a, b):
        typing = await guest.recv()
        assert typing["body"]["events"] == [{"eventType": "Typing", "typing": {"type": "On", "duration": 5000}}]
        frame = await guest.recv()
        body = frame["body"]
        assert (frame["type"], body["id"], body["direction"]) == ("message", message_id, "Outbound")
        assert (body["text"], body["originatingEntity"], body["channel"]["from"]["nickname"]) == (
            "Hello, I am Ann",
            "Human",
            "Ann",
        )
    assert [m["id"] for m in sim.history(a.token)] == [message_id]  # typing is not history


async def test_agent_text_cut_inside_an_emoji_travels_as_an_escape(sim: Simulator, guest_factory: GuestFactory) -> None:
    # An unpaired surrogate cannot be sent as UTF-8; JSON writes it as an escape (§3.2).
    guest = await guest_factory()
    await sim.agent_say(guest.token, "ü then half an emoji: \ud83d")
    raw = await guest.ws.recv()  # the text frame itself is UTF-8, as every frame
    assert isinstance(raw, str)
    assert "\\u00fc then half an emoji: \\ud83d" in raw
    assert json.loads(raw)["body"]["text"] == "ü then half an emoji: \ud83d"


async def test_a_guest_text_with_half_a_surrogate_pair_is_echoed_not_dropped(
    sim: Simulator, guest_factory: GuestFactory
) -> None:
    guest = await guest_factory()
    await guest.say("cut \ud83d", tracing_id="m-half")  # json.dumps writes it as an escape
    echo = await guest.recv()
    assert (echo["code"], echo["tracingId"], echo["body"]["text"]) == (200, "m-half", "cut \ud83d")
    assert [m["text"] for m in sim.history(guest.token)] == ["cut \ud83d"]


async def test_fault_fail_next_gives_5000(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await sim.fail_next(guest.token, 1, actions=["onMessage"])
    await guest.send("getJwt", tracingId="jwt")
    assert (await guest.recv())["class"] == "JwtResponse"
    await guest.say("boom", tracing_id="b")
    frame = await guest.recv()
    assert (frame["code"], frame["body"]) == (5000, "Request failed.")
    await guest.say("fine", tracing_id="f")
    assert (await guest.recv())["tracingId"] == "f"


async def test_fault_duplicate_frames(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await sim.duplicate_next(guest.token, 1)
    message_id = await sim.agent_say(guest.token, "twice")
    first, second = await guest.recv(), await guest.recv()
    assert first == second
    assert first["body"]["id"] == message_id


async def test_fault_drop_connection_abruptly(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    assert await sim.drop_connections(guest.token) == 1
    assert await guest.closed() == 1006
    assert sim.session(guest.token).connections == []


async def test_fault_drop_with_close_code(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await sim.drop_connections(guest.token, code=1011)
    assert await guest.closed() == 1011


async def test_fault_delay_keeps_order(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await sim.set_delay(guest.token, 0.05, classes=["StructuredMessage"])
    ids = [await sim.agent_say(guest.token, f"m{n}") for n in range(3)]
    assert [(await guest.recv())["body"]["id"] for _ in ids] == ids


async def test_fault_reorder_within_window_keeps_channel_time(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await sim.set_reorder(guest.token, 4)
    ids = [await sim.agent_say(guest.token, f"m{n}") for n in range(4)]
    frames = [await guest.recv() for _ in ids]
    assert sorted(f["body"]["id"] for f in frames) == sorted(ids)
    stamped = {f["body"]["id"]: datetime.fromisoformat(f["body"]["channel"]["time"]) for f in frames}
    times = [stamped[i] for i in ids]
    assert times == sorted(times)  # channel.time still tells the true order


async def test_simulator_wide_faults() -> None:
    async with Simulator(SimulatorConfig(agent_script=False)) as sim, AsyncExitStack() as stack:
        await sim.fail_next(None, 1)
        guest = await open_guest(sim, stack, configure=False)
        assert (await guest.configure())["code"] == 5000
        assert (await guest.configure())["class"] == "SessionResponse"
