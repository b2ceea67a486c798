"""MemorySessionStore, the fake other tests use: it must behave like the real store."""

from __future__ import annotations

import asyncio

from bridge.ports import SessionStore
from bridge.store.memory import MemorySessionStore
from tests.store.helpers import make_record


async def test_newest_wins_and_closed_are_not_live() -> None:
    store: SessionStore = MemorySessionStore()
    await store.save(make_record("a", n=1))
    await store.save(make_record("b", n=1))
    await store.save(make_record("a", n=2))
    await store.save(make_record("b", n=2, closed=True))
    assert [(r.session_id, r.seq) for r in await store.load_live()] == [("a", 2)]


async def test_seeded_records_and_wait_for_a_checkpoint() -> None:
    store = MemorySessionStore(initial=[make_record("a")])
    assert [r.session_id for r in await store.load_live()] == ["a"]

    async def later() -> None:
        await store.save(make_record("a", n=7))

    async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
        waiting = tg.create_task(store.wait_for(lambda r: r.last_message_id == "m-7"))
        tg.create_task(later())
    assert waiting.result().seq == 7
    assert [r.seq for r in store.history] == [7]
