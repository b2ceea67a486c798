"""Group commit: appends made while the log is busy share one write, and each returns only with its own write's
result; cancelling one append never loses another's record."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from bridge.store.group_commit import GroupCommit


class GatedLog:
    """A ``write`` for :class:`GroupCommit` that records each batch, then holds it until the test releases it
    (:meth:`release` lets one write finish, :meth:`open` every write from now on)."""

    def __init__(self, *, fail: BaseException | None = None) -> None:
        self.batches: list[list[bytes]] = []
        self.fail = fail
        self._open = False
        self._permits = asyncio.Semaphore(0)
        self._written = asyncio.Condition()

    def release(self) -> None:
        self._permits.release()

    def open(self) -> None:
        self._open = True
        for _ in range(100):
            self._permits.release()

    async def started(self, writes: int) -> None:
        """Wait until ``writes`` writes have begun."""
        async with self._written:
            await self._written.wait_for(lambda: len(self.batches) >= writes)

    async def write(self, bodies: list[bytes]) -> None:
        self.batches.append(list(bodies))
        async with self._written:
            self._written.notify_all()
        if not self._open:
            await self._permits.acquire()
        if self.fail is not None:
            raise self.fail


Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


async def behind_a_busy_write(
    commit: GroupCommit, log: GatedLog, bodies: tuple[bytes, ...], spawn: Spawn = asyncio.create_task
) -> tuple[asyncio.Task[None], list[asyncio.Task[None]]]:
    """A write that holds the only slot (``b"busy"``, held by ``log``), then appends of ``bodies``, which
    gather behind it into the next batch. Returns the busy append and the others."""
    busy = spawn(commit.append(b"busy"))
    await log.started(1)
    waiting = [spawn(commit.append(body)) for body in bodies]
    await asyncio.sleep(0)  # let them join (a loop turn, not a wait on time)
    return busy, waiting


async def cancelled(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and see it end cancelled."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_idle_log_writes_an_append_at_once_and_alone() -> None:
    log = GatedLog()
    log.open()
    commit = GroupCommit(log.write)
    await commit.append(b"a")
    await commit.append(b"b")
    assert log.batches == [[b"a"], [b"b"]]


async def test_appends_made_while_the_slots_are_busy_share_the_next_write() -> None:
    log = GatedLog()
    commit = GroupCommit(log.write, in_flight=1)
    async with asyncio.TaskGroup() as tg:
        first = tg.create_task(commit.append(b"a"))
        await log.started(1)
        rest = [tg.create_task(commit.append(body)) for body in (b"b", b"c", b"d")]
        await asyncio.sleep(0)  # let them join (a loop turn, not a wait on time)
        assert not first.done()
        assert not any(t.done() for t in rest)
        log.open()
    assert log.batches == [[b"a"], [b"b", b"c", b"d"]]


async def test_with_a_free_slot_an_append_is_written_at_once() -> None:
    log = GatedLog()
    commit = GroupCommit(log.write, in_flight=2)
    async with asyncio.TaskGroup() as tg:
        first = tg.create_task(commit.append(b"a"))
        second = tg.create_task(commit.append(b"b"))
        third = tg.create_task(commit.append(b"c"))
        await log.started(1)
        await asyncio.sleep(0)
        assert log.batches == [[b"a"], [b"b"]]  # both slots taken: "c" waits and gathers
        log.open()
        await asyncio.gather(first, second, third)
    assert log.batches == [[b"a"], [b"b"], [b"c"]]


async def test_a_batch_is_bounded_by_records_and_by_bytes() -> None:
    log = GatedLog()
    by_count = GroupCommit(log.write, max_records=2, in_flight=1)
    busy, waiting = await behind_a_busy_write(by_count, log, (b"1", b"2", b"3", b"4", b"5"))
    log.open()
    await asyncio.gather(busy, *waiting)
    assert log.batches == [[b"busy"], [b"1", b"2"], [b"3", b"4"], [b"5"]]

    log = GatedLog()
    by_size = GroupCommit(log.write, max_bytes=10, in_flight=1)
    busy, waiting = await behind_a_busy_write(by_size, log, (b"x" * 6, b"y" * 4, b"z" * 11))
    log.open()
    await asyncio.gather(busy, *waiting)
    assert log.batches == [[b"busy"], [b"x" * 6, b"y" * 4], [b"z" * 11]]  # a larger body goes alone


async def test_a_failed_write_fails_every_append_it_held() -> None:
    log = GatedLog()
    commit = GroupCommit(log.write, in_flight=1)
    busy, held = await behind_a_busy_write(commit, log, (b"a", b"b", b"c"))
    log.fail = ConnectionError("broker away")
    log.open()
    results = await asyncio.gather(busy, *held, return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError] * 4
    assert log.batches == [[b"busy"], [b"a", b"b", b"c"]]
    log.fail = None
    await commit.append(b"d")  # the next append writes again
    assert log.batches[-1] == [b"d"]


async def test_a_leader_cancelled_before_its_write_hands_the_batch_on() -> None:
    log = GatedLog()
    commit = GroupCommit(log.write, in_flight=1)
    async with asyncio.TaskGroup() as tg:
        busy, (leader, *members) = await behind_a_busy_write(commit, log, (b"leader", b"m1", b"m2"), tg.create_task)
        await cancelled(leader)  # waiting for the slot, its batch not written yet
        log.open()
        await asyncio.gather(busy, *members)
    assert log.batches == [[b"busy"], [b"m1", b"m2"]]


async def test_a_leader_cancelled_during_its_write_has_the_members_write_again() -> None:
    log = GatedLog()
    commit = GroupCommit(log.write, in_flight=1)
    async with asyncio.TaskGroup() as tg:
        busy, (leader, *members) = await behind_a_busy_write(commit, log, (b"leader", b"m1", b"m2"), tg.create_task)
        log.release()
        await log.started(2)
        await cancelled(leader)  # the write of [leader, m1, m2] is cut short: whether it landed is unknown
        log.open()
        await asyncio.gather(busy, *members)
    assert log.batches[:2] == [[b"busy"], [b"leader", b"m1", b"m2"]]
    assert [body for batch in log.batches[2:] for body in batch] == [b"m1", b"m2"]


async def test_a_cancelled_member_does_not_cancel_the_write() -> None:
    log = GatedLog()
    commit = GroupCommit(log.write, in_flight=1)
    async with asyncio.TaskGroup() as tg:
        busy, (leader, member) = await behind_a_busy_write(commit, log, (b"leader", b"member"), tg.create_task)
        await cancelled(member)
        log.open()
        await asyncio.gather(busy, leader)
    assert log.batches == [[b"busy"], [b"leader", b"member"]]
