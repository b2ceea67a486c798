"""The daemon's process-wide tuning.

``BRIDGE_EVENT_LOOP``: uvloop by default when it is installed, asyncio's loop on request or without it, and a
clear start-up error (exit 78) when uvloop is asked for and missing. The daemon says which loop it runs on in
``bridge_started``.

The garbage collector: at start-up, before any session exists, the daemon freezes its heap and raises the
thresholds (``gc_tuned``). Only ``run_daemon`` does: a bridge run inside another process (tests, the demo) leaves that
process's collector alone.

"Missing" is real: the daemon's ``PYTHONPATH`` starts with a ``uvloop`` package whose import fails, as it
would where no wheel exists. In-process, ``sys.modules["uvloop"] = None`` makes the import fail the same way.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Literal

import pytest

from bridge.amqp.tools import delete_names
from bridge.app import GC_THRESHOLDS, tune_gc
from bridge.config import Settings
from bridge.errors import EXIT_CONFIG, ConfigError
from bridge.eventloop import choose_loop, loop_name
from tests.conftest import BrokerNames
from tests.daemon import Daemon, free_port

pytestmark = pytest.mark.timeout(60)


def _hide_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` now raises ImportError


def _run_briefly(factory_name: str, setting: Literal["auto", "asyncio", "uvloop"]) -> str:
    choice = choose_loop(setting)
    assert choice.name == factory_name
    with asyncio.Runner(loop_factory=choice.factory) as runner:
        return runner.run(_running_loop_name())


async def _running_loop_name() -> str:
    return loop_name(asyncio.get_running_loop())


def test_the_default_is_auto() -> None:
    assert Settings.load().event_loop == "auto"


def test_auto_and_uvloop_run_uvloop_when_it_is_installed() -> None:
    pytest.importorskip("uvloop")
    assert _run_briefly("uvloop", "auto") == "uvloop"
    assert _run_briefly("uvloop", "uvloop") == "uvloop"


def test_asyncio_runs_the_standard_loop_even_with_uvloop_installed() -> None:
    assert _run_briefly("asyncio", "asyncio") == "asyncio"


def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_uvloop(monkeypatch)
    assert _run_briefly("asyncio", "auto") == "asyncio"


def test_uvloop_asked_for_and_missing_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_uvloop(monkeypatch)
    with pytest.raises(ConfigError, match="BRIDGE_EVENT_LOOP=uvloop"):
        choose_loop("uvloop")


def test_an_unknown_loop_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_EVENT_LOOP", "trio")
    with pytest.raises(ConfigError, match="BRIDGE_EVENT_LOOP"):
        Settings.load()


@pytest.fixture
def no_uvloop_path(tmp_path: Path) -> str:
    """A ``PYTHONPATH`` entry whose ``uvloop`` fails to import, as on a platform without a wheel."""
    package = tmp_path / "hidden" / "uvloop"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('raise ImportError("no uvloop on this platform (test)")\n')
    return str(package.parent)


@pytest.fixture
async def daemon_env(broker_names: BrokerNames, amqp_url: str) -> AsyncIterator[dict[str, str]]:
    """A daemon environment of its own names (deleted afterwards), no journal: nothing but a start is needed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(
        BRIDGE_AMQP_URL=amqp_url,
        BRIDGE_COMMAND_EXCHANGE=broker_names.command_exchange,
        BRIDGE_INTAKE_QUEUE=broker_names.intake_queue,
        BRIDGE_EVENT_EXCHANGE=broker_names.event_exchange,
        BRIDGE_DEAD_LETTER_QUEUE=broker_names.dead_letter_queue,
        BRIDGE_DURABLE_SESSIONS="false",
        BRIDGE_HTTP_HOST="127.0.0.1",
        BRIDGE_HTTP_PORT=str(free_port()),
        BRIDGE_LOG_FORMAT="json",
    )
    yield env
    await delete_names(
        amqp_url,
        exchanges=(broker_names.command_exchange, broker_names.event_exchange),
        queues=broker_names.queues(),
    )


@pytest.mark.parametrize(
    ("setting", "hidden", "expected"),
    [(None, False, "uvloop"), ("asyncio", False, "asyncio"), (None, True, "asyncio")],
    ids=["auto-installed", "asyncio", "auto-missing"],
)
async def test_the_daemon_logs_the_loop_it_runs_on(
    daemon_env: dict[str, str], no_uvloop_path: str, setting: str | None, hidden: bool, expected: str
) -> None:
    pytest.importorskip("uvloop")
    if setting is not None:
        daemon_env["BRIDGE_EVENT_LOOP"] = setting
    if hidden:
        daemon_env["PYTHONPATH"] = os.pathsep.join(filter(None, [no_uvloop_path, daemon_env.get("PYTHONPATH")]))
    async with Daemon(daemon_env) as daemon:
        started = await daemon.started()
        assert started["event_loop"] == expected
        assert await daemon.stop(signal.SIGTERM) == 0


async def test_the_daemon_refuses_to_start_when_uvloop_is_asked_for_and_missing(
    daemon_env: dict[str, str], no_uvloop_path: str
) -> None:
    daemon_env["BRIDGE_EVENT_LOOP"] = "uvloop"
    daemon_env["PYTHONPATH"] = no_uvloop_path
    async with Daemon(daemon_env) as daemon:
        assert await daemon.exited() == EXIT_CONFIG
        assert not daemon.events("bridge_started")
        assert any("BRIDGE_EVENT_LOOP=uvloop" in line for line in daemon.lines), daemon.tail()


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The test process's collector as it was before the test."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_freezes_what_is_alive_and_raises_the_thresholds() -> None:
    long_lived = [[i] for i in range(1000)]
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() >= len(long_lived)
    first = long_lived[0]
    assert not any(o is first for o in gc.get_objects()), "frozen: no generation holds it any more"


async def test_the_daemon_tunes_its_collector_before_any_session(daemon_env: dict[str, str]) -> None:
    async with Daemon(daemon_env) as daemon:
        await daemon.recovered()
        tuned = await daemon.wait_log("gc_tuned")
        events = [e.get("event") for e in daemon.logs]
        assert events.index("gc_tuned") < events.index("bridge_started")
        assert tuned["thresholds"] == list(GC_THRESHOLDS)
        assert tuned["frozen_objects"] > 0
        assert await daemon.stop(signal.SIGTERM) == 0
