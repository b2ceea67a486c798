"""How concurrent work ends: a loop's check whether its task was asked to stop, and steps that all run out."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from bridge.tasks import asked_to_stop, each_to_its_end, stop_if_asked
from tests.cancel_aside import turn_the_cancel_aside


async def test_a_task_nobody_cancelled_goes_on() -> None:
    assert not asked_to_stop()
    stop_if_asked()


async def test_a_cancel_that_a_call_turned_aside_still_stops_the_task() -> None:
    """The cancel reached an awaited call, which returned normally instead; the request is still pending."""
    seen: list[bool] = []
    waiting = asyncio.Event()

    async def loop() -> None:
        await turn_the_cancel_aside(waiting)
        seen.append(asked_to_stop())
        stop_if_asked()

    task = asyncio.create_task(loop())
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [True]


async def test_a_cancel_taken_back_by_a_timeout_does_not_stop_the_task() -> None:
    """``asyncio.timeout`` cancels the task for its own deadline and takes the request back."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await asyncio.Event().wait()
    assert not asked_to_stop()


@pytest.mark.looptime
async def test_a_failed_step_raises_only_once_every_other_step_has_ended() -> None:
    ended: list[str] = []

    async def fails_first() -> None:
        ended.append("failed")
        raise ValueError("first")

    async def takes_longer() -> None:
        await asyncio.sleep(5)
        ended.append("slow")

    async def fails_later() -> None:
        await asyncio.sleep(1)
        ended.append("failed later")
        raise KeyError("second")

    with capture_logs() as logs, pytest.raises(KeyError, match="second"):  # the first in argument order
        await each_to_its_end(fails_later(), fails_first(), takes_longer())
    assert ended == ["failed", "failed later", "slow"]
    assert [(entry["event"], entry["error"]) for entry in logs] == [
        ("step_failed_beside_another", "ValueError('first')")
    ]
    assert await each_to_its_end(asyncio.sleep(0, result=1), asyncio.sleep(0, result=2)) == [1, 2]


async def test_a_cancel_of_the_caller_cancels_every_step_whatever_they_end_with() -> None:
    started, cancelled = [asyncio.Event(), asyncio.Event()], []

    async def turns_the_cancel_aside() -> None:
        try:
            await turn_the_cancel_aside(started[0], raising=RuntimeError("a close reason"))
        finally:
            cancelled.append("aside")

    async def plain() -> None:
        started[1].set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("plain")
            raise

    caller = asyncio.create_task(each_to_its_end(turns_the_cancel_aside(), plain()))
    for step in started:
        await step.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert sorted(cancelled) == ["aside", "plain"]
