"""How concurrent work ends: a loop's check whether its task was asked to stop, and steps that all run out."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bridge.tasks import TaskGroup, asked_to_stop, each_to_its_end, stop_if_asked
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


async def test_a_group_whose_child_fails_after_its_body_ended_leaves_its_task_not_asked_to_stop() -> None:
    """asyncio's TaskGroup before Python 3.13 leaves its own cancel counted on the task in this case."""
    release = asyncio.Event()

    async def fails_once_released() -> None:
        await release.wait()
        raise ValueError("late")

    async def group() -> None:
        async with TaskGroup() as tasks:
            tasks.create_task(fails_once_released())
            asyncio.get_running_loop().call_soon(release.set)  # fails while the group waits for it

    with pytest.raises(ExceptionGroup) as failed:
        await group()
    assert failed.group_contains(ValueError, match="late")
    assert not asked_to_stop()


async def test_a_group_still_passes_on_a_cancel_of_its_task() -> None:
    entered = asyncio.Event()

    async def group() -> None:
        async with TaskGroup() as tasks:
            tasks.create_task(asyncio.Event().wait())
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(group())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelling() == 1


async def test_a_group_takes_back_its_cancel_when_a_child_fails_while_the_body_runs() -> None:
    async def fails() -> None:
        raise ValueError("soon")

    async def group() -> None:
        async with TaskGroup() as tasks:
            tasks.create_task(fails())
            await asyncio.Event().wait()  # cancelled by the group

    with pytest.raises(ExceptionGroup):
        await group()
    assert not asked_to_stop()


def test_the_bridge_uses_its_own_task_group() -> None:
    """Every TaskGroup of the daemon takes back its own cancel: none is asyncio's own (the simulator, an
    oracle of Genesys that never asks whether it was asked to stop, may use asyncio's)."""
    bridge = Path(__file__).resolve().parent.parent / "bridge"
    uses = [
        f"{path.relative_to(bridge)}:{node.lineno}"
        for path in sorted(bridge.rglob("*.py"))
        if path.name != "tasks.py" and "simulator" not in path.parts
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute)
        and node.attr == "TaskGroup"
        and isinstance(node.value, ast.Name)
        and node.value.id == "asyncio"
    ]
    assert uses == []
