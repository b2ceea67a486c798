"""Signal: asyncio.Event's behaviour (set wakes every waiter, clear re-arms, cancelled waiters leave nothing)."""

from __future__ import annotations

import asyncio

import pytest

from bridge.session.signal import Signal


async def test_set_wakes_every_waiter_and_wait_returns_at_once_while_set() -> None:
    signal = Signal()
    waiters = [asyncio.create_task(signal.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    signal.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert signal.is_set()
    assert await signal.wait()


async def test_a_set_reaches_its_waiters_even_when_cleared_before_they_run() -> None:
    signal = Signal()
    waiter = asyncio.create_task(signal.wait())
    await asyncio.sleep(0)
    signal.set()
    signal.clear()
    assert await waiter
    assert not signal.is_set()


async def test_clear_makes_the_next_wait_wait_for_the_next_set() -> None:
    signal = Signal()
    signal.set()
    signal.clear()
    waiter = asyncio.create_task(signal.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    signal.set()
    assert await waiter


async def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    signal = Signal()
    waiter = asyncio.create_task(signal.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert signal._waiters is None
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await signal.wait()
    assert signal._waiters is None
