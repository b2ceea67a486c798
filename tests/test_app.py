"""Composition-root pieces that run without a broker: the re-journal loop and recovery accounting."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from structlog.testing import capture_logs

from bridge.app import REJOURNAL_RETRY_S, _rejournal_forever, warn_unknown_settings
from bridge.config import Settings, environment_unknowns
from bridge.errors import BrokerUnavailable
from tests.cancel_aside import turn_the_cancel_aside


class _FlakyStore:
    """A journal store whose first re-journal fails with broker trouble."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.second = asyncio.Event()

    async def rejournal(self, *, older_than_s: float = 0.0) -> int:
        self.calls.append(asyncio.get_running_loop().time())
        if len(self.calls) == 1:
            raise BrokerUnavailable("journal connection lost")
        self.second.set()
        return 3


@dataclass
class _Owner:
    index: int
    journal: _FlakyStore


@dataclass
class _Partition:
    owner: _Owner


class _Fleet:
    """The fleet as the re-journal loop sees it: the partitions owned here."""

    def __init__(self, store: _FlakyStore) -> None:
        self._partitions = [_Partition(_Owner(0, store))]

    def owned(self) -> list[_Partition]:
        return self._partitions


@pytest.mark.looptime
async def test_a_failed_rejournal_is_retried_soon_and_never_stops_the_loop() -> None:
    store = _FlakyStore()
    start = asyncio.get_running_loop().time()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(_rejournal_forever(_Fleet(store), 3600.0))  # type: ignore[arg-type]
        await store.second.wait()
        task.cancel()
    first, second = (t - start for t in store.calls)
    assert first == pytest.approx(3600.0)
    assert second - first == pytest.approx(REJOURNAL_RETRY_S)


class _StoreTurningTheCancelAside:
    """A journal store whose re-journal ends a cancellation of its caller with a broker error of its own."""

    def __init__(self) -> None:
        self.writing = asyncio.Event()

    async def rejournal(self, *, older_than_s: float = 0.0) -> int:
        await turn_the_cancel_aside(self.writing, raising=BrokerUnavailable("the channel closed"))
        return 0


@pytest.mark.looptime
async def test_a_cancelled_rejournal_loop_ends_even_when_the_journal_turns_the_cancel_aside() -> None:
    """The drain cancels the loop during a pass; an error in place of the cancellation ends it too, rather
    than counting as a failed pass to retry."""
    store = _StoreTurningTheCancelAside()
    task = asyncio.create_task(_rejournal_forever(_Fleet(store), 3600.0))  # type: ignore[arg-type]
    await store.writing.wait()
    task.cancel()
    async with asyncio.timeout(10 * REJOURNAL_RETRY_S):
        with pytest.raises(asyncio.CancelledError):
            await task


def test_run_warns_about_each_unknown_bridge_variable_and_still_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``genesys-bridge run`` does before the daemon starts: load, then warn (never fail) per stray name."""
    monkeypatch.setenv("BRIDGE_LOG_LEVL", "DEBUG")
    monkeypatch.setenv("BRIDGE_NOT_A_THING_AT_ALL", "1")
    settings = Settings.load()  # a typo is not invalid configuration
    with capture_logs() as logs:
        warn_unknown_settings(environment_unknowns())
    warnings = [(e["name"], e["closest"]) for e in logs if e["event"] == "unknown_setting"]
    assert ("BRIDGE_LOG_LEVL", "BRIDGE_LOG_LEVEL") in warnings
    assert ("BRIDGE_NOT_A_THING_AT_ALL", None) in warnings
    assert {e["log_level"] for e in logs} == {"warning"}
    assert settings.log_level == "INFO"
