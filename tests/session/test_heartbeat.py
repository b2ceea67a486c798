"""The process's one timer for periodic beats: first after its phase, then every interval, on one loop timer;
a cancelled beat stops and lets go of its owner; a failing callback is logged and beats on. Virtual time."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
from structlog.testing import capture_logs

from bridge.session.heartbeat import Heartbeat

pytestmark = pytest.mark.looptime


class Ticks:
    """A beat's owner: counts its beats and wakes a waiter on each."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._changed = asyncio.Event()

    def __call__(self) -> None:
        self.times.append(asyncio.get_running_loop().time())
        self._changed.set()

    async def wait(self, count: int) -> list[float]:
        while len(self.times) < count:
            self._changed.clear()
            await self._changed.wait()
        return self.times[:count]


async def test_a_beat_comes_after_its_phase_then_every_interval() -> None:
    heartbeat = Heartbeat()
    start = asyncio.get_running_loop().time()
    ticks = Ticks()
    heartbeat.every(10.0, ticks, first_s=3.0)
    assert [t - start for t in await ticks.wait(3)] == pytest.approx([3.0, 13.0, 23.0])


async def test_beats_of_many_owners_share_the_timer_and_keep_their_own_times() -> None:
    heartbeat = Heartbeat()
    start = asyncio.get_running_loop().time()
    late, early, same = Ticks(), Ticks(), Ticks()
    heartbeat.every(100.0, late, first_s=50.0)
    heartbeat.every(7.0, early, first_s=1.0)  # earlier than the armed timer: re-arms it
    heartbeat.every(100.0, same, first_s=50.0)
    assert [t - start for t in await early.wait(2)] == pytest.approx([1.0, 8.0])
    assert [t - start for t in await late.wait(2)] == pytest.approx([50.0, 150.0])
    assert [t - start for t in await same.wait(1)] == pytest.approx([50.0])
    assert len(heartbeat) == 3


async def test_a_cancelled_beat_stops_and_lets_go_of_its_owner() -> None:
    heartbeat = Heartbeat()
    stopped, going = Ticks(), Ticks()
    beat = heartbeat.every(10.0, stopped, first_s=0.0)
    heartbeat.every(10.0, going, first_s=0.0)
    await stopped.wait(1)
    beat.cancel()
    beat.cancel()  # idempotent
    assert beat.cancelled
    assert len(heartbeat) == 1
    owner = weakref.ref(stopped)
    del stopped
    gc.collect()
    assert owner() is None  # cancelled: nothing of its owner is kept until the heap drops it
    await going.wait(4)
    assert len(heartbeat) == 1


async def test_a_beat_can_cancel_itself_from_its_callback() -> None:
    heartbeat = Heartbeat()
    ticks = Ticks()

    def once() -> None:
        ticks()
        beat.cancel()

    beat = heartbeat.every(5.0, once, first_s=1.0)
    other = Ticks()
    heartbeat.every(5.0, other, first_s=1.0)
    await other.wait(3)
    assert len(ticks.times) == 1
    assert len(heartbeat) == 1


async def test_a_failing_callback_is_logged_and_its_beat_goes_on() -> None:
    heartbeat = Heartbeat()
    ticks = Ticks()

    def failing() -> None:
        ticks()
        raise RuntimeError("boom")

    with capture_logs() as logs:
        heartbeat.every(5.0, failing, first_s=0.0)
        await ticks.wait(3)
    assert [entry["event"] for entry in logs] == ["heartbeat_beat_failed"] * 3


async def test_many_ended_owners_do_not_grow_the_heap() -> None:
    heartbeat = Heartbeat()
    keep = Ticks()
    heartbeat.every(240.0, keep, first_s=240.0)
    for _ in range(10):  # sessions come and go far faster than their beats come due
        beats = [heartbeat.every(240.0, Ticks(), first_s=240.0) for _ in range(100)]
        for beat in beats:
            beat.cancel()
    assert len(heartbeat) == 1
    assert len(heartbeat._heap) < 300  # rebuilt without the cancelled ones, not 1,001 entries
    assert len(await keep.wait(1)) == 1


async def test_an_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Heartbeat().every(0.0, Ticks(), first_s=0.0)


async def test_a_callback_that_cancels_many_beats_and_its_own_keeps_the_count_right() -> None:
    heartbeat = Heartbeat()
    others = [heartbeat.every(60.0, Ticks(), first_s=60.0) for _ in range(100)]
    keep = Ticks()
    heartbeat.every(5.0, keep, first_s=2.0)

    def shutdown() -> None:  # a drain: one callback ends many owners, its own among them
        for beat in others:
            beat.cancel()
        own.cancel()

    own = heartbeat.every(5.0, shutdown, first_s=1.0)
    await keep.wait(1)
    assert len(heartbeat) == 1
    await keep.wait(20)  # past the cancelled beats' due time: the heap drops what is left of them
    assert len(heartbeat) == 1
