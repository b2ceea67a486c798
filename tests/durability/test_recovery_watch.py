"""Unit tests of :class:`bridge.recovery.RecoveryWatch`: what counts as a recovered session, and when."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from bridge.contract import Event
from bridge.contract.events import MessageReceived, SessionEnded, SessionResumed
from bridge.recovery import RecoveryWatch


class ListSink:
    """An EventSink that keeps what it was given (a fake of our own port)."""

    def __init__(self) -> None:
        self.published: list[Event] = []

    async def publish(self, event: Event, *, deployment_id: str | None, reply_to: str | None = None) -> None:
        self.published.append(event)


def _stamp(session_id: str, seq: int = 1) -> dict[str, Any]:
    return {"event_id": f"e-{session_id}-{seq}", "session_id": session_id, "seq": seq, "occurred_at": datetime.now(UTC)}


async def test_resumed_and_ended_sessions_count_once_and_finish_the_recovery() -> None:
    sink = ListSink()
    watch = RecoveryWatch(sink, ["a", "b", "c"])
    assert (watch.total, watch.pending, watch.done) == (3, 3, False)

    await watch.publish(SessionResumed(**_stamp("a"), cause="restart", missed_messages=0), deployment_id="d")
    message = MessageReceived(**_stamp("b"), genesys_message_id="m1", direction="outbound", raw={})
    await watch.publish(message, deployment_id="d")  # not a recovery event
    await watch.publish(SessionResumed(**_stamp("a", 2), cause="reconnect", missed_messages=0), deployment_id="d")
    await watch.publish(SessionResumed(**_stamp("other"), cause="restart", missed_messages=0), deployment_id="d")
    assert watch.pending == 2
    await watch.publish(SessionEnded(**_stamp("b", 2), reason="conversation_lost"), deployment_id="d")
    assert not watch.done

    watch.resume_returned(lambda session_id: session_id != "c")  # c could not even be spawned
    async with asyncio.timeout(1):
        await watch.finished()
    watch.log_finished()
    assert watch.results == {"resumed": 1, "ended:conversation_lost": 1, "not_started": 1}
    assert len(sink.published) == 5  # everything still reaches the real sink


async def test_nothing_to_recover_is_finished_at_once() -> None:
    watch = RecoveryWatch(ListSink(), [])
    assert watch.done
    async with asyncio.timeout(1):
        await watch.finished()
