"""A resume's catch-up while the agent keeps talking live, and the socket of a failed resume attempt.

Virtual time (looptime): a fake history call that ``await asyncio.sleep(1)`` lets every ready task run (the
socket pump handles the live frame) before it answers; nothing waits on wall-clock time.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from bridge.errors import GenesysUnavailable
from bridge.genesys.events import AgentMessage, AgentTyping
from bridge.genesys.frames import StructuredMessage
from bridge.session import inbound
from bridge.session.inbound import HeldEvents
from tests.session.conftest import Harness, running

pytestmark = pytest.mark.looptime


def _patch_history(h: Harness, during: Any, *, before_page: bool) -> None:
    """The next history fetch runs ``during()`` (then lets the pump work) before or after reading the page."""
    original = h.history.fetch_history
    done = False

    async def fetch(*args: Any, **kwargs: Any) -> Any:
        nonlocal done
        if done:
            return await original(*args, **kwargs)
        done = True
        if before_page:
            during()
            await asyncio.sleep(1)
            return await original(*args, **kwargs)
        page = await original(*args, **kwargs)
        during()
        await asyncio.sleep(1)
        return page

    h.history.fetch_history = fetch  # type: ignore[method-assign]


@pytest.mark.parametrize("before_page", [True, False], ids=["live-in-history-page", "live-after-page"])
async def test_live_message_during_backfill_hides_no_missed_message(before_page: bool) -> None:
    """[live M2 (checkpointed during the backfill), missed M1, known] used to stop at M2 and lose
    M1; M2 could also be published twice, and before M1 in seq order."""
    async with running() as h:
        token = await h.start()
        h.peer.agent_say(token, "known")
        await h.sink.wait_type("message.received", 1, "s1")
        _patch_history(h, lambda: h.peer.agent_say(token, "live during the backfill"), before_page=before_page)
        h.peer.drop_all()
        h.peer.agent_say(token, "missed while away", live=False)
        await h.sink.wait_type("message.received", 3, "s1")
        (resumed,) = await h.sink.wait_type("session.resumed", 1, "s1")
        await h.say("s1", "after the resume")  # everything before it is settled

        received = h.sink.of_type("message.received", "s1")
        assert [m.text for m in received] == ["known", "missed while away", "live during the backfill"]
        assert len({m.genesys_message_id for m in received}) == 3  # each once
        seqs = [m.seq for m in received]
        assert seqs == sorted(seqs)  # seq follows Genesys' order
        assert received[1].backfilled
        assert received[2].backfilled is before_page  # from history if the page had it, else released live
        assert resumed.missed_messages == (2 if before_page else 1)
        assert resumed.seq < received[1].seq


async def test_live_disconnect_during_backfill_ends_after_the_missed_messages() -> None:
    async with running() as h:
        token = await h.start()
        h.peer.agent_say(token, "known")
        await h.sink.wait_type("message.received", 1, "s1")
        _patch_history(h, lambda: h.peer.disconnect(token, read_only=True), before_page=False)
        h.peer.drop_all()
        h.peer.agent_say(token, "missed while away", live=False)
        (ended,) = await h.sink.wait_type("session.ended", 1, "s1")
        assert ended.reason == "agent_disconnected"
        received = h.sink.of_type("message.received", "s1")
        assert [m.text for m in received] == ["known", "missed while away"]
        assert received[-1].seq < ended.seq


async def test_held_overflow_reconnects_and_loses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbound, "HeldEvents", functools.partial(HeldEvents, limit=2))
    async with running() as h:
        token = await h.start()
        h.peer.agent_say(token, "known")
        await h.sink.wait_type("message.received", 1, "s1")

        def burst() -> None:
            for i in range(3):
                h.peer.agent_say(token, f"burst {i}")

        _patch_history(h, burst, before_page=False)
        h.peer.drop_all()
        h.peer.agent_say(token, "missed while away", live=False)
        await h.sink.wait_type("session.resumed", 1, "s1")
        await h.sink.wait_type("message.received", 5, "s1")
        await h.say("s1", "after the resume")
        received = h.sink.of_type("message.received", "s1")
        assert [m.text for m in received] == ["known", "missed while away", "burst 0", "burst 1", "burst 2"]
        # The overflow gave up that catch-up (nothing of it published) and resumed again.
        assert len([f for f in h.peer.received if f["action"] == "configureSession"]) == 3
        assert not h.sink.of_type("session.ended", "s1")


def _message(text: str) -> AgentMessage:
    return AgentMessage(StructuredMessage.model_validate({"id": text, "type": "Text", "text": text}))


def test_held_events_are_bounded() -> None:
    held = HeldEvents(limit=2)
    held.add(_message("a"))
    held.add(_message("b"))
    typing = AgentTyping(StructuredMessage.model_validate({"id": "t", "type": "Event"}), 5000)
    held.add(typing)  # ephemeral: dropped, not an overflow
    assert (len(held), held.overflowed) == (2, False)
    held.add(_message("c"))
    assert (len(held), held.overflowed) == (2, True)
    first = held.pop()
    assert isinstance(first, AgentMessage)
    assert first.message.id == "a"


async def test_failed_resume_attempt_closes_its_socket() -> None:
    """a retryable failure with the socket still open (history down) leaked the WebSocket."""
    async with running() as h:
        token = await h.start()
        original = h.history.fetch_history
        failures = 2

        async def flaky(*args: Any, **kwargs: Any) -> Any:
            nonlocal failures
            if failures:
                failures -= 1
                raise GenesysUnavailable("fake: history unreachable")
            return await original(*args, **kwargs)

        h.history.fetch_history = flaky  # type: ignore[method-assign]
        h.peer.drop_all()
        h.peer.agent_say(token, "missed", live=False)
        await h.sink.wait_type("session.resumed", 1, "s1")
        assert len([f for f in h.peer.received if f["action"] == "configureSession"]) == 4
        assert len(h.peer.connections) == 1  # only the live one; the two failed attempts were closed
        assert [m.text for m in await h.sink.wait_type("message.received", 1, "s1")] == ["missed"]
