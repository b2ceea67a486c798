"""The command line as a real process: ``python -m bridge <args>`` with the test's ``BRIDGE_*`` names."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass

from bridge.config import Settings

__all__ = ["PROCESS_S", "Finished", "cli", "cli_env"]

#: Backstop for one CLI process; the per-test timeout is the real limit.
PROCESS_S = 45.0


@dataclass(frozen=True)
class Finished:
    """What a finished CLI process left: its exit code and its output, decoded."""

    returncode: int
    stdout: str
    stderr: str


def cli_env(settings: Settings) -> dict[str, str]:
    """This process' environment without any ``BRIDGE_*``, plus the names and URL of ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("BRIDGE_")}
    env |= {
        "BRIDGE_AMQP_URL": settings.amqp_url.get_secret_value(),
        "BRIDGE_COMMAND_EXCHANGE": settings.command_exchange,
        "BRIDGE_INTAKE_QUEUE": settings.intake_queue,
        "BRIDGE_EVENT_EXCHANGE": settings.event_exchange,
        "BRIDGE_DEAD_LETTER_QUEUE": settings.dead_letter_queue,
    }
    return env


async def cli(*args: str, env: dict[str, str]) -> Finished:
    """Run ``python -m bridge <args>`` to completion (at most :data:`PROCESS_S`)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(PROCESS_S):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())
