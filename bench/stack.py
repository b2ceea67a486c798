"""The system under test: the simulator and the bridge daemon, each in its own process, on unique names.

``async with Stack(name, max_sessions=N) as stack:`` starts ``bench.sim_server`` then ``genesys-bridge run``
(``python -m bridge run``) with every exchange and queue named uniquely for this run, waits for
``/readyz``, and on exit kills both and deletes what the bridge declared. ``stack.pids`` names the
processes whose CPU the benchmarks split (bridge, simulator, rabbitmq, loadgen = this process).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

import aiohttp

from bench.common import AMQP_URL, free_port, unique_prefix
from bench.procs import Child, find_rabbitmq_pid, rss_bytes
from bridge.amqp.tools import DeploymentNames, delete_names
from bridge.errors import BrokerError

__all__ = ["LOG_DIR", "Stack", "bridge_available"]

LOG_DIR = os.environ.get("BENCH_LOG_DIR", os.path.join(tempfile.gettempdir(), "genesys-bridge-bench"))
_SESSIONS_RE = re.compile(r'^genesys_bridge_sessions\{state="([^"]+)"\} ([0-9.e+]+)$', re.MULTILINE)


def _bridge_argv() -> list[str]:
    """``python -m bridge run``, or ``BENCH_BRIDGE_CMD`` (split on spaces) to benchmark another build."""
    override = os.environ.get("BENCH_BRIDGE_CMD")
    return override.split() if override else [sys.executable, "-m", "bridge", "run"]


def bridge_available() -> str | None:
    """None when ``genesys-bridge run`` exists; otherwise why not (the scripts report it and skip)."""
    if importlib.util.find_spec("bridge.app") is None:
        return "bridge/app.py (the daemon's composition root) does not exist yet"
    if os.environ.get("BENCH_BRIDGE_CMD"):
        return None
    probe = subprocess.run(  # the CLI is wired separately from app.py
        [*_bridge_argv(), "--help"], capture_output=True, timeout=60, check=False
    )
    if probe.returncode != 0:
        return "`genesys-bridge run` is not wired in bridge/cli.py yet"
    return None


class Stack:
    """Simulator + bridge for one benchmark repetition. Attributes are valid inside ``async with``."""

    def __init__(
        self,
        name: str,
        *,
        max_sessions: int,
        agent: bool = False,
        extra_env: dict[str, str] | None = None,
        bridge_argv: list[str] | None = None,
    ):
        """``bridge_argv`` runs another build of the daemon (default: ``BENCH_BRIDGE_CMD``, or this one)."""
        self.name = name
        self.bridge_argv = bridge_argv or _bridge_argv()
        self.prefix = unique_prefix(name)
        self.names = DeploymentNames(self.prefix)
        self.max_sessions = max_sessions
        self.agent = agent
        self.extra_env = extra_env or {}
        self.http_port = free_port()
        self.sim: Child | None = None
        self.bridge: Child | None = None
        self.sim_url = ""
        self.bench_url = ""
        self.env: dict[str, str] = {}
        self._stack = AsyncExitStack()
        self._http: aiohttp.ClientSession | None = None
        self.rabbitmq_pid = find_rabbitmq_pid()

    @property
    def pids(self) -> dict[str, int | None]:
        """Processes whose CPU is split: bridge, simulator, rabbitmq, loadgen (this process)."""
        return {
            "bridge": self.bridge.pid if self.bridge else None,
            "simulator": self.sim.pid if self.sim else None,
            "rabbitmq": self.rabbitmq_pid,
            "loadgen": os.getpid(),
        }

    def bridge_env(self) -> dict[str, str]:
        """The daemon's environment: unique names, the simulator as Genesys, limits for N sessions."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        env.update(
            self.names.environment(),
            BRIDGE_AMQP_URL=AMQP_URL,
            BRIDGE_STATE_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),
            BRIDGE_HTTP_HOST="127.0.0.1",
            BRIDGE_HTTP_PORT=str(self.http_port),
            BRIDGE_GENESYS_BASE_URL=self.sim_url,
            BRIDGE_MAX_SESSIONS=str(self.max_sessions + 100),
            BRIDGE_LOG_LEVEL=os.environ.get("BENCH_BRIDGE_LOG_LEVEL", "INFO"),
            BRIDGE_LOG_FORMAT="json",
        )
        env.update(self.extra_env)
        return env

    async def __aenter__(self) -> Self:
        os.makedirs(LOG_DIR, exist_ok=True)
        try:
            self._http = await self._stack.enter_async_context(aiohttp.ClientSession())
            argv = [sys.executable, "-m", "bench.sim_server", *([] if self.agent else ["--no-agent"])]
            self.sim = await self._stack.enter_async_context(
                Child(argv, name="simulator", log_path=f"{LOG_DIR}/{self.prefix}.sim.log", announce=True)
            )
            line = await self.sim.first_line(timeout_s=20)
            match = re.match(r"listening on (\S+) bench (\d+)", line)
            assert match is not None, f"unexpected simulator banner: {line!r}"
            self.sim_url = match.group(1)
            self.bench_url = f"http://127.0.0.1:{match.group(2)}"
            self._stack.push_async_callback(self._delete_names)
            self.env = self.bridge_env()
            await self.start_bridge()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def start_bridge(self, ready_timeout_s: float = 60.0) -> None:
        """Start (or restart, after :meth:`kill_bridge`) the daemon and wait until /readyz says 200."""
        self.bridge = await self._stack.enter_async_context(
            Child(
                self.bridge_argv,
                name="bridge",
                env=self.env,
                log_path=f"{LOG_DIR}/{self.prefix}.bridge.log",
            )
        )
        await self.wait_ready(ready_timeout_s)

    async def kill_bridge(self) -> None:
        """SIGKILL the daemon (a crash) and reap it."""
        assert self.bridge is not None
        await self.bridge.stop(signal.SIGKILL)

    async def wait_ready(self, timeout_s: float) -> None:
        """Poll /readyz every 50 ms until 200; raise with the log's tail if the daemon exits or times out."""
        assert self._http is not None
        assert self.bridge is not None
        url = f"http://127.0.0.1:{self.http_port}/readyz"
        why = "timed out"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.bridge.alive():
                    with contextlib.suppress(aiohttp.ClientError):
                        async with self._http.get(url) as resp:
                            if resp.status == 200:
                                return
                    await asyncio.sleep(0.05)
                why = f"exited with code {self.bridge.proc.returncode if self.bridge.proc else None}"
        raise RuntimeError(f"bridge not ready ({why}); log tail:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the bridge's log (for error messages)."""
        if self.bridge is None:
            return ""
        with contextlib.suppress(OSError), open(self.bridge.log_path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
        return ""

    async def metrics_text(self) -> str:
        """The daemon's /metrics page."""
        assert self._http is not None
        async with self._http.get(f"http://127.0.0.1:{self.http_port}/metrics") as resp:
            return await resp.text()

    async def sessions_by_state(self) -> dict[str, float]:
        """``genesys_bridge_sessions{state}`` from /metrics."""
        return {state: float(v) for state, v in _SESSIONS_RE.findall(await self.metrics_text())}

    def bridge_rss(self) -> int:
        """The daemon's RSS in bytes."""
        assert self.bridge is not None
        return rss_bytes(self.bridge.pid)

    async def control(self, path: str, body: dict[str, Any], timeout_s: float = 120.0) -> dict[str, Any]:
        """POST to the simulator's bench driver (``/bench/...``)."""
        assert self._http is not None
        async with self._http.post(
            self.bench_url + path, json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            resp.raise_for_status()
            result: dict[str, Any] = await resp.json()
            return result

    async def _delete_names(self) -> None:
        """Delete every exchange, queue and stream of this stack (a broker that is away is not an error)."""
        with contextlib.suppress(BrokerError):
            await delete_names(
                AMQP_URL, exchanges=(self.names.command_exchange, self.names.event_exchange), queues=self.names.queues()
            )
