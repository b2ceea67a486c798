"""The bridge as a real subprocess (``python -m bridge run``), configured through its environment.

:class:`Daemon` reads the process's JSON log lines (stderr) as they come, so a test can await a log event
(``bridge_started``) instead of sleeping, and inspect every line afterwards (redaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from bridge.config import Settings

__all__ = ["Daemon", "daemon_env", "run_to_exit", "running_daemon"]

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 30.0


def daemon_env(settings: Settings) -> dict[str, str]:
    """The ``BRIDGE_*`` environment that reproduces ``settings`` (only what the tests set)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    fields = settings.model_dump()
    for name in (
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
    ):
        value = fields[name]
        if value is None:
            continue
        env["BRIDGE_" + name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    env["BRIDGE_AMQP_URL"] = settings.amqp_url.get_secret_value()
    if settings.state_key is not None:
        env["BRIDGE_STATE_KEY"] = settings.state_key.get_secret_value()
    env["BRIDGE_LOG_FORMAT"] = "json"
    return env


class Daemon:
    """One running ``genesys-bridge run`` process and its log lines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.records: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()

    async def read_logs(self) -> None:
        """Collect stderr until EOF (run as a task for the process's whole life)."""
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            async with self._changed:
                self.lines.append(line)
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        self.records.append(record)
                self._changed.notify_all()

    async def wait_log(self, event: str, **fields: object) -> dict[str, Any]:
        """The first log record with this ``event`` name (and these field values), waiting for it."""

        def match() -> dict[str, Any] | None:
            for record in self.records:
                if record.get("event") == event and all(record.get(k) == v for k, v in fields.items()):
                    return record
            return None

        async with asyncio.timeout(WAIT_S), self._changed:
            await self._changed.wait_for(lambda: match() is not None or self.process.returncode is not None)
            found = match()
            assert found is not None, f"daemon exited ({self.process.returncode}) before logging {event!r}"
            return found

    def events(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("event") == event]

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum`` and wait for the exit code."""
        self.process.send_signal(signum)
        async with asyncio.timeout(WAIT_S):
            return await self.process.wait()


async def _spawn(env: Mapping[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "run",
        cwd=ROOT,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_to_exit(env: Mapping[str, str]) -> Daemon:
    """Run a daemon that is expected to stop by itself (a failed start); returns it, exited, with its logs."""
    daemon = Daemon(await _spawn(env))
    async with asyncio.timeout(WAIT_S):
        await daemon.read_logs()
        await daemon.process.wait()
    return daemon


@contextlib.asynccontextmanager
async def running_daemon(env: Mapping[str, str]) -> AsyncIterator[Daemon]:
    """Start the daemon, wait until it logged ``bridge_started``; kill it on exit if it still runs."""
    process = await _spawn(env)
    daemon = Daemon(process)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(daemon.read_logs())
        try:
            await daemon.wait_log("bridge_started")
            yield daemon
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
