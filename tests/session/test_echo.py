"""The echo health check (§4.4): the first echo of a session waits its drawn phase, then one per interval; the
real phase is spread over the interval, so sessions opened together do not all echo at once. Virtual time."""

from __future__ import annotations

import asyncio

import pytest

from bridge.session.ports import spread_phase
from tests.session.conftest import running

pytestmark = pytest.mark.looptime


def echoes(received: list[dict[str, object]]) -> int:
    return sum(1 for frame in received if frame.get("action") == "echo")


async def test_the_first_echo_waits_the_phase_then_one_each_interval() -> None:
    async with running(echo_interval_s=60.0, echo_phase=lambda interval: 13.0) as h:
        loop = asyncio.get_running_loop()
        await h.start("s1")
        started = loop.time()
        times: list[float] = []
        for n in (1, 2, 3):
            await h.peer.wait_received(lambda frames, n=n: echoes(frames) >= n)
            times.append(loop.time() - started)
    assert times == pytest.approx([13.0, 73.0, 133.0], abs=0.01)


async def test_sessions_opened_together_echo_at_their_own_phases() -> None:
    phases = iter([5.0, 20.0, 41.0])
    async with running(echo_interval_s=60.0, echo_phase=lambda interval: next(phases)) as h:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(h.start(f"s{i}") for i in range(3)))
        times: list[float] = []
        for n in (1, 2, 3):
            await h.peer.wait_received(lambda frames, n=n: echoes(frames) >= n)
            times.append(round(loop.time() - started, 1))
    assert times == [5.0, 20.0, 41.0]


def test_the_real_phase_falls_within_the_interval() -> None:
    drawn = [spread_phase(240.0) for _ in range(1000)]
    assert all(0.0 <= d < 240.0 for d in drawn)
    assert min(drawn) < 60.0 < 180.0 < max(drawn)  # spread over the interval, not bunched
