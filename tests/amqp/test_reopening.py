"""The journal's connection: opened on first use, reopened on the first use after a loss, attempts spaced
by the reconnect backoff. Against the real broker, on a manual clock."""

from __future__ import annotations

import asyncio

import pytest
from aio_pika.abc import AbstractConnection

from bridge.amqp.connection import ReopeningConnection, connection_lost, open_connection
from bridge.config import Settings
from bridge.errors import BrokerUnavailable
from tests.amqp.conftest import WAIT_S, CutOffConnect
from tests.store.helpers import FixedClock


class FlakyConnect:
    """Our ``Connect`` seam: refuses while ``down`` (the broker is "away"), counts every attempt."""

    def __init__(self) -> None:
        self.down = False
        self.attempts = 0
        self.opened: list[AbstractConnection] = []

    async def __call__(self, settings: Settings, *, name: str) -> AbstractConnection:
        self.attempts += 1
        if self.down:
            raise BrokerUnavailable("ConnectionRefusedError: the broker is away")
        connection = await open_connection(settings, name=name)
        self.opened.append(connection)
        return connection


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"reconnect_initial_s": 1.0, "broker_reconnect_max_s": 30.0})


async def test_an_unreachable_broker_is_tried_again_only_when_the_backoff_allows(settings: Settings) -> None:
    clock = FixedClock()
    connect = FlakyConnect()
    connect.down = True
    async with ReopeningConnection(settings, name="reopening", connect=connect, clock=clock) as conn:
        with pytest.raises(BrokerUnavailable, match="the broker is away"):
            await conn.get()
        connect.down = False
        with pytest.raises(BrokerUnavailable, match="next attempt is due"):
            await conn.get()  # fails at once: the wait after one failure is not over
        assert connect.attempts == 1

        clock.advance(2 * settings.reconnect_initial_s)  # reconnect_initial_s plus at most as much jitter
        connection = await conn.get()
        assert not connection.is_closed
        assert await conn.get() is connection  # in use: no new attempt
        assert connect.attempts == 2
    assert connection.is_closed


async def test_concurrent_uses_share_one_attempt(settings: Settings) -> None:
    connect = FlakyConnect()
    async with ReopeningConnection(settings, name="reopening", connect=connect, clock=FixedClock()) as conn:
        async with asyncio.timeout(WAIT_S):
            got = await asyncio.gather(*(conn.get() for _ in range(5)))
    assert connect.attempts == 1
    assert len({id(c) for c in got}) == 1


async def test_a_closed_connection_refuses_further_uses(settings: Settings) -> None:
    connect = FlakyConnect()
    conn = ReopeningConnection(settings, name="reopening", connect=connect, clock=FixedClock())
    first = await conn.get()
    await conn.close()
    await conn.close()  # idempotent
    assert first.is_closed
    with pytest.raises(BrokerUnavailable, match="is closed"):
        await conn.get()
    assert connect.attempts == 1


async def test_a_connection_lost_before_its_close_callback_was_added_is_opened_again(settings: Settings) -> None:
    """Its close callbacks ran before ours was added, so only the connection itself tells; handed out
    again, it would fail every use for ever."""
    clock = FixedClock()
    connect = CutOffConnect()
    async with ReopeningConnection(settings, name="reopening", connect=connect, clock=clock) as conn:
        first = await conn.get()
        assert connection_lost(first)
        with pytest.raises(BrokerUnavailable, match="next attempt is due"):
            await conn.get()  # lost as soon as it came up: a failed attempt, with its wait
        clock.advance(2 * settings.reconnect_initial_s)
        second = await conn.get()
        assert second is not first
        assert not connection_lost(second)
        assert connect.attempts == 2
