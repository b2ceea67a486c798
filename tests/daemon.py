"""The bridge daemon as a real subprocess (``genesys-bridge run``), with its JSON logs as awaitable events.

Tests build its environment (:func:`daemon_env` from a :class:`~bridge.config.Settings`, or by hand), start
it with ``async with Daemon(env) as daemon:``, await log events (``bridge_started``, ``recovery_finished``,
``startup_failed``) instead of sleeping, read ``/readyz`` and ``/metrics``, and stop it with SIGKILL (a
crash) or SIGTERM (a drain). Every output line is kept, and parsed once when it is JSON, so a test can
assert on the whole history of one process (redaction, say). Set ``DAEMON_DUMP_LOGS=1`` to print the log
tail of a daemon whose test failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

from bridge.config import Settings

__all__ = ["BRIDGE_BIN", "Daemon", "DaemonExited", "daemon_env", "free_port", "metric_value"]

ROOT = Path(__file__).resolve().parent.parent

#: The console script the package installs; fall back to ``python -m bridge`` outside a venv.
_VENV_BIN = Path(sys.executable).with_name("genesys-bridge")
BRIDGE_BIN: list[str] = [str(_VENV_BIN)] if _VENV_BIN.exists() else [sys.executable, "-m", "bridge"]

#: Backstop for awaited log events; the per-test timeout is the real limit.
WAIT_S = 45.0

#: The settings :func:`daemon_env` passes on (the ones the tests set), besides the secrets.
_ENV_SETTINGS = (
    "command_exchange",
    "intake_queue",
    "event_exchange",
    "dead_letter_queue",
    "journal_stream",
    "http_host",
    "http_port",
    "genesys_base_url",
    "durable_sessions",
    "send_rate_per_s",
    "send_burst",
    "reconnect_initial_s",
    "reconnect_max_s",
    "broker_reconnect_max_s",
    "drain_timeout_s",
    "log_level",
)


class DaemonExited(AssertionError):
    """The daemon exited while a test waited for something else; carries the exit code and the log tail."""


def daemon_env(settings: Settings) -> dict[str, str]:
    """The ``BRIDGE_*`` environment that reproduces ``settings`` (only what the tests set), JSON logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    fields = settings.model_dump()
    for name in _ENV_SETTINGS:
        value = fields[name]
        if value is None:
            continue
        env["BRIDGE_" + name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    env["BRIDGE_AMQP_URL"] = settings.amqp_url.get_secret_value()
    if settings.state_key is not None:
        env["BRIDGE_STATE_KEY"] = settings.state_key.get_secret_value()
    env["BRIDGE_LOG_FORMAT"] = "json"
    return env


def free_port() -> int:
    """A TCP port that was free a moment ago (the daemon binds it; a clash fails loudly, never silently)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metric_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """One sample from a Prometheus text page, or None when absent."""
    want = ",".join(f'{k}="{v}"' for k, v in (labels or {}).items())
    head = f"{name}{{{want}}}" if want else name
    for line in text.splitlines():
        if line.startswith(head + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


class Daemon:
    """One run of ``genesys-bridge run``. Use as ``async with Daemon(env) as d:``; leaving kills it if alive.

    ``lines`` holds every line the process wrote (stdout and stderr), ``logs`` the same lines parsed (a line
    that is not a JSON object becomes ``{"event": "_unparsed", "text": line}``), ``returncode`` its exit code
    once it exited.
    """

    def __init__(self, env: Mapping[str, str], *, name: str = "bridge") -> None:
        self.env = dict(env)
        self.name = name
        self.http_port = int(self.env.get("BRIDGE_HTTP_PORT", "0"))
        self.logs: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.returncode: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> Self:
        self._proc = await asyncio.create_subprocess_exec(
            *BRIDGE_BIN,
            "run",
            cwd=ROOT,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read(), name=f"{self.name}-log-reader")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.alive:
            await self.stop(signal.SIGKILL)
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), 5)
            if not self._reader.done():
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reader
        if exc is not None and os.environ.get("DAEMON_DUMP_LOGS"):
            print(f"--- {self.name} log ---\n" + "\n".join(self.lines[-200:]), file=sys.stderr)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        stream = self._proc.stdout
        while line := await stream.readline():
            text = line.decode("utf-8", errors="replace").rstrip("\n")
            try:
                entry = json.loads(text)
            except ValueError:
                entry = {"event": "_unparsed", "text": text}
            if not isinstance(entry, dict):
                entry = {"event": "_unparsed", "text": text}
            async with self._changed:
                self.lines.append(text)
                self.logs.append(entry)
                self._changed.notify_all()
        self.returncode = await self._proc.wait()
        async with self._changed:
            self._changed.notify_all()

    def events(self, event: str, **fields: object) -> list[dict[str, Any]]:
        """Every log entry named ``event`` whose fields include ``fields``."""
        return [e for e in self.logs if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())]

    async def lines_beyond(self, count: int) -> None:
        """Return once the daemon has written more than ``count`` lines, or has exited. (A count taken before
        looking at the logs, so a line written meanwhile is never missed.)"""
        async with self._changed:
            while len(self.lines) <= count and self.returncode is None:
                await self._changed.wait()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.lines[-lines:])

    async def wait_for(self, predicate: Callable[[], bool], *, what: str, timeout_s: float = WAIT_S) -> None:
        """Wait until ``predicate()`` holds (re-checked on every log line); fail fast if the daemon exits."""
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                while not predicate():
                    if self.returncode is not None:
                        raise DaemonExited(f"{self.name} exited ({self.returncode}) before {what}:\n{self.tail()}")
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"{self.name}: timed out waiting for {what}:\n{self.tail()}") from None

    async def wait_log(self, event: str, *, timeout_s: float = WAIT_S, **fields: object) -> dict[str, Any]:
        """The first log entry named ``event`` with ``fields`` (awaits it)."""
        await self.wait_for(lambda: bool(self.events(event, **fields)), what=f"log {event}", timeout_s=timeout_s)
        return self.events(event, **fields)[0]

    async def started(self, *, timeout_s: float = WAIT_S) -> dict[str, Any]:
        """Await ``bridge_started`` (sessions spawned, intake consuming); returns that log entry."""
        return await self.wait_log("bridge_started", timeout_s=timeout_s)

    async def recovered(self, *, timeout_s: float = WAIT_S) -> dict[str, Any]:
        """Await ``recovery_finished`` (every resumed session resumed or ended; ``/readyz`` turns true)."""
        return await self.wait_log("recovery_finished", timeout_s=timeout_s)

    async def exited(self, *, timeout_s: float = WAIT_S) -> int:
        """Await the process's exit (and its last log line); returns its exit code."""
        assert self._proc is not None
        async with asyncio.timeout(timeout_s):
            code = await self._proc.wait()
        if self._reader is not None:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._reader)
        return code

    async def stop(self, sig: signal.Signals) -> int:
        """Send ``sig`` (SIGKILL = crash, SIGTERM = drain) and await the exit code."""
        assert self._proc is not None
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)
        return await self.exited()

    # --- HTTP -----------------------------------------------------------------------------------------
    async def get(self, path: str) -> tuple[int, str]:
        """GET ``path`` on the daemon's HTTP port; (status, body)."""
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.http_port}{path}") as resp:
            return resp.status, await resp.text()

    async def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        _, text = await self.get("/metrics")
        return metric_value(text, name, labels)
