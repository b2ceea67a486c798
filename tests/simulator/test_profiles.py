"""The real-defaults profile and the knobs that model what real Genesys does by default.

``SimulatorConfig()`` is a new Genesys deployment: no Disconnect, Clear, guest typing or autostart, and
error frames without ``tracingId`` (§2.2, §5.3, §6). The "everything-on" profile turns those on. Also:
out-of-order delivery (§3.2, §10) and a Disconnect overtaking the agent's last message.
"""

from __future__ import annotations

import dataclasses
import random
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from bridge.simulator import PROFILES, Simulator, SimulatorConfig
from bridge.simulator.cli import build_parser, config_from_args
from bridge.simulator.limits import SlidingWindow, TokenBucket
from tests.simulator.conftest import DEPLOYMENT, EVERYTHING_ON, Guest, GuestFactory, open_guest

DISCONNECT = [{"eventType": "Presence", "presence": {"type": "Disconnect"}}]
TYPING = {"type": "Event", "events": [{"eventType": "Typing", "typing": {"type": "On"}}]}


async def _conversations_config(sim: Simulator) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        response = await http.get(f"/webdeployments/v1/deployments/{DEPLOYMENT}/config.json")
    conversations = response.json()["messenger"]["apps"]["conversations"]
    assert isinstance(conversations, dict)
    return conversations


def test_the_defaults_are_a_new_real_deployment() -> None:
    config = SimulatorConfig()
    assert PROFILES["real"] == config
    assert (config.disconnect_enabled, config.clear_enabled, config.typing_enabled, config.autostart) == (
        False,
        False,
        False,
        False,
    )
    assert (config.error_tracing_id, config.echo_own_typing, config.reorder_window) == ("never", False, 1)
    assert config.disconnect_overtakes_last_message == "off"


def test_everything_on_turns_on_the_features_and_nothing_else() -> None:
    everything = SimulatorConfig.everything_on()
    assert PROFILES["everything-on"] == everything == SimulatorConfig.profile("everything-on")
    changed = {
        f.name
        for f in dataclasses.fields(SimulatorConfig)
        if getattr(everything, f.name) != getattr(SimulatorConfig(), f.name)
    }
    assert changed == {"disconnect_enabled", "clear_enabled", "typing_enabled", "autostart", "error_tracing_id"}
    assert (everything.disconnect_mode, everything.error_tracing_id) == ("read_only", "always")


def test_command_line_profiles_and_overrides() -> None:
    parser = build_parser()
    real = config_from_args(parser.parse_args([]))
    assert real == SimulatorConfig()
    everything = config_from_args(parser.parse_args(["--profile", "everything-on", "--no-typing"]))
    assert everything == dataclasses.replace(SimulatorConfig.everything_on(), typing_enabled=False)
    custom = config_from_args(
        parser.parse_args(
            ["--disconnect", "--disconnect-mode", "send", "--disconnect-overtakes", "lost", "--clear", "--typing"]
        )
    )
    assert (custom.disconnect_enabled, custom.disconnect_mode, custom.disconnect_overtakes_last_message) == (
        True,
        "send",
        "lost",
    )
    assert (custom.clear_enabled, custom.typing_enabled, custom.error_tracing_id) == (True, True, "never")
    with pytest.raises(SystemExit):
        parser.parse_args(["--profile", "nope"])


async def test_config_json_reflects_the_real_defaults(sim: Simulator) -> None:
    conversations = await _conversations_config(sim)
    assert conversations["conversationDisconnect"] == {"enabled": False, "type": "ReadOnly"}
    assert conversations["conversationClear"] == {"enabled": False}
    assert conversations["showUserTypingIndicator"] is False
    assert conversations["autoStart"] == {"enabled": False}


@pytest.mark.parametrize("config", [EVERYTHING_ON])
async def test_config_json_of_everything_on(sim: Simulator) -> None:
    conversations = await _conversations_config(sim)
    assert conversations["conversationDisconnect"] == {"enabled": True, "type": "ReadOnly"}
    assert conversations["conversationClear"] == {"enabled": True}
    assert conversations["showUserTypingIndicator"] is True
    assert conversations["autoStart"] == {"enabled": True}


async def _error_frames(sim: Simulator) -> list[dict[str, Any]]:
    """One error of each family, every request sent with a tracingId: 4007 before configure, 400,
    4011, 403 typing, 429 TooManyRequestsErrorMessage and GenerateUrlError."""
    frames: list[dict[str, Any]] = []
    async with AsyncExitStack() as stack:
        guest = await open_guest(sim, stack, configure=False)
        await guest.say("too early", tracing_id="t-4007")
        frames.append(await guest.recv())
        assert (await guest.configure())["class"] == "SessionResponse"
        await guest.send("noSuchAction", tracingId="t-400")
        frames.append(await guest.recv())
        await guest.say("x" * 4097, tracing_id="t-4011")
        frames.append(await guest.recv())
        if not sim.config.typing_enabled:
            await guest.send("onMessage", tracingId="t-403", message=TYPING)
            frames.append(await guest.recv())
        for n in range(3):  # the third echo in a minute is refused (§8)
            await guest.send("echo", tracingId=f"t-echo-{n}", message={"type": "Text", "text": "ping"})
            frame = await guest.recv()
        frames.append(frame)
        await guest.send("onAttachment", tracingId="t-url", fileName="a.exe", fileType="application/x", fileSize=1)
        frames.append(await guest.recv())
    return frames


async def test_error_frames_carry_no_tracing_id_by_default(sim: Simulator) -> None:
    frames = await _error_frames(sim)
    assert [(f["class"], f["code"]) for f in frames] == [
        ("string", 4007),
        ("string", 400),
        ("string", 4011),
        ("string", 403),
        ("TooManyRequestsErrorMessage", 429),
        ("GenerateUrlError", 200),
    ]
    assert [f for f in frames if "tracingId" in f] == []


@pytest.mark.parametrize("config", [EVERYTHING_ON])
async def test_everything_on_traces_error_frames(sim: Simulator) -> None:
    frames = await _error_frames(sim)
    assert [f["tracingId"] for f in frames] == ["t-4007", "t-400", "t-4011", "t-echo-2", "t-url"]


async def test_disconnect_is_off_by_default(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    await guest.say("hello", tracing_id="1")
    await guest.recv()
    conversation = sim.session(guest.token).conversation_id
    assert await sim.disconnect(guest.token) is None
    session = sim.session(guest.token)
    assert (session.conversation_id, session.read_only) == (None, False)  # the conversation ended silently
    await guest.say("still there?", tracing_id="2")
    frame = await guest.recv()  # no Disconnect frame came first, and no 409
    assert (frame["tracingId"], frame["body"]["text"]) == ("2", "still there?")
    assert session.conversation_id not in (None, conversation)  # a new conversation
    assert [m["text"] for m in sim.history(guest.token)] == ["hello", "still there?"]


async def test_without_disconnect_the_last_message_is_delivered(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    message_id, disconnect_id = await sim.agent_say_and_disconnect(guest.token, "bye now", overtake="lost")
    assert disconnect_id is None  # nothing can overtake a Disconnect that is never sent
    assert (await guest.recv())["body"]["id"] == message_id


async def _after_disconnect(guest: Guest) -> dict[str, Any]:
    """The next frame after a read-only Disconnect, forced by a message that gets 409."""
    await guest.say("anyone?", tracing_id="ro")
    return await guest.recv()


@pytest.mark.parametrize("config", [EVERYTHING_ON])
async def test_disconnect_overtakes_the_last_message_late(sim: Simulator, guest_factory: GuestFactory) -> None:
    a = await guest_factory()
    b = await guest_factory(a.token)
    message_id, disconnect_id = await sim.agent_say_and_disconnect(a.token, "last words", overtake="late")
    for guest in (a, b):
        first, second = await guest.recv(), await guest.recv()
        assert (first["body"]["id"], first["body"]["events"]) == (disconnect_id, DISCONNECT)
        assert first["body"]["metadata"]["readOnly"] == "true"
        assert (second["body"]["id"], second["body"]["text"]) == (message_id, "last words")
        assert second["body"]["channel"]["time"] <= first["body"]["channel"]["time"]  # said before
    assert [m["id"] for m in sim.history(a.token)] == [message_id, disconnect_id]
    assert (await _after_disconnect(a))["code"] == 409


@pytest.mark.parametrize("config", [dataclasses.replace(EVERYTHING_ON, disconnect_overtakes_last_message="lost")])
async def test_disconnect_overtakes_the_last_message_lost(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    message_id, disconnect_id = await sim.agent_say_and_disconnect(guest.token, "never seen")  # the knob
    assert (await guest.recv())["body"]["id"] == disconnect_id
    assert (await _after_disconnect(guest))["code"] == 409  # the message frame never came
    assert [m["id"] for m in sim.history(guest.token)] == [message_id, disconnect_id]  # but history has it


@pytest.mark.parametrize("config", [EVERYTHING_ON])
async def test_say_and_disconnect_in_order_over_http(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    async with httpx.AsyncClient(base_url=sim.base_url + "/control") as http:
        bad = await http.post("/agent_say_and_disconnect", json={"token": guest.token, "overtake": "early"})
        assert bad.status_code == 400
        said = await http.post(
            "/agent_say_and_disconnect", json={"token": guest.token, "text": "bye", "overtake": "off"}
        )
        ids = said.json()
    assert [(await guest.recv())["body"]["id"] for _ in range(2)] == [ids["id"], ids["disconnect_id"]]


@pytest.mark.parametrize("config", [dataclasses.replace(EVERYTHING_ON, disconnect_mode="send")])
async def test_late_last_message_over_http_in_send_mode(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()
    async with httpx.AsyncClient(base_url=sim.base_url + "/control") as http:
        said = await http.post(
            "/agent_say_and_disconnect", json={"token": guest.token, "text": "bye", "overtake": "late"}
        )
        ids = said.json()
    first, second = (await guest.recv())["body"], (await guest.recv())["body"]
    assert (first["id"], second["id"]) == (ids["disconnect_id"], ids["id"])
    assert "readOnly" not in first["metadata"]
    await guest.say("one more thing", tracing_id="more")
    assert (await guest.recv())["tracingId"] == "more"  # Send mode: still writable


SEED = 4  # shuffles a window of three into reverse order


@pytest.mark.parametrize("config", [dataclasses.replace(EVERYTHING_ON, reorder_window=3, random_seed=SEED)])
async def test_reorder_window_shuffles_agent_messages_and_events(sim: Simulator, guest_factory: GuestFactory) -> None:
    guest = await guest_factory()  # the SessionResponse left alone, in a window of one
    sent = [
        await sim.agent_typing(guest.token),
        await sim.agent_say(guest.token, "in between"),
        await sim.disconnect(guest.token),
    ]
    order = [0, 1, 2]
    random.Random(SEED).shuffle(order)
    assert order != [0, 1, 2]
    frames = [(await guest.recv())["body"] for _ in sent]
    assert [f["id"] for f in frames] == [sent[i] for i in order]
    stamped = {f["id"]: f["channel"]["time"] for f in frames}
    times = [stamped[i] for i in sent]
    assert times == sorted(times)  # channel.time still tells the true order (§10)


def test_a_sliding_window_refuses_what_a_token_bucket_would_refill() -> None:
    """§8, §14.1: the stricter reading of "2 per second" (how Genesys counts is not documented)."""
    now = [0.0]
    window = SlidingWindow(2, 1.0, lambda: now[0])
    bucket = TokenBucket(2, 1.0, lambda: now[0])
    assert [window.try_take(), window.try_take(), bucket.try_take(), bucket.try_take()] == [True] * 4
    now[0] = 0.5
    assert bucket.try_take()  # refilled one token in half a second
    assert not window.try_take()  # two already in the last second
    now[0] = 1.0
    assert window.try_take()
