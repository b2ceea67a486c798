"""A broker link's reconnect loop ends when it is stopped, even when a channel call turns the stop aside."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import pytest

from bridge.amqp.link import BrokerLink
from bridge.config import Settings
from bridge.observability.metrics import Metrics
from tests.cancel_aside import turn_the_cancel_aside

pytestmark = pytest.mark.looptime


class _Connection:
    """What the link does with a connection it gives up: asks whether it is closed, and closes it."""

    is_closed = False

    async def close(self) -> None:
        self.is_closed = True


class _LinkWhosePrepareTurnsTheCancelAside(BrokerLink[None]):
    """A link whose set-up, cancelled while it waits for the broker, raises a connection error of its own
    (as aiormq raises a channel's close reason that races a cancel); set-ups after that one succeed."""

    def __init__(self, settings: Settings) -> None:
        metrics = Metrics(process_metrics=False)
        super().__init__(settings, metrics, link="test", links=None, connection_name="t", connect=self._open_fake)
        self.preparing = asyncio.Event()
        self.prepares = 0

    async def _open_fake(self, settings: Settings, *, name: str) -> Any:
        return _Connection()

    async def _prepare(self, connection: Any) -> None:
        self.prepares += 1
        if self.prepares == 1:
            await turn_the_cancel_aside(self.preparing, raising=ConnectionResetError("the channel closed"))

    async def _serve(self, prepared: None) -> None:
        await asyncio.Event().wait()

    async def _shutdown(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close_link(exc_type, exc, tb)


async def test_a_link_stopped_while_it_connects_ends_instead_of_connecting_again() -> None:
    settings = Settings.load(reconnect_initial_s=1.0, broker_reconnect_max_s=30.0)
    link = _LinkWhosePrepareTurnsTheCancelAside(settings)
    async with asyncio.timeout(300):  # virtual time: far longer than any backoff
        async with link:
            await link.preparing.wait()
    assert link.prepares == 1  # no second connection was set up after the stop
