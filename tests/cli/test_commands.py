"""The command line as a shell uses it: real ``python -m bridge`` processes, their stdout and exit codes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from pydantic import SecretStr

import bridge
import genesys_bridge_client
from bridge.config import Settings
from bridge.store.crypto import load_keys

#: Backstop for one CLI process that needs no broker.
PROCESS_S = 30.0


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m bridge <args>`` to completion, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        text=True,
        timeout=PROCESS_S,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_version_names_the_daemon_and_the_client_package() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == (
        f"genesys-bridge {bridge.__version__} (genesys-bridge-client {genesys_bridge_client.__version__})"
    )


def test_keygen_prints_only_a_key_the_daemon_accepts() -> None:
    first, second = run_cli("keygen"), run_cli("keygen")
    assert first.returncode == 0
    assert first.stderr == ""
    lines = first.stdout.splitlines()
    assert len(lines) == 1, "exactly the key, so $(genesys-bridge keygen) captures nothing else"
    key = lines[0]
    assert second.stdout.strip() != key, "fresh each time"
    ring = load_keys(Settings(state_key=SecretStr(key)))
    assert ring.open(ring.seal(b"token")) == b"token"


#: Options only the simulator has: both help screens must show them, from the one definition.
SIMULATOR_OPTIONS = ("--profile", "--unknown-deployment-mode", "--disconnect-overtakes", "--agent-delay")


def test_simulate_is_a_real_subcommand_with_the_simulators_options() -> None:
    for help_text in (run_cli("simulate", "--help").stdout, run_cli("--help").stdout):
        missing = [option for option in SIMULATOR_OPTIONS if option not in help_text]
        assert not missing, help_text
    standalone = subprocess.run(
        [sys.executable, "-m", "bridge.simulator", "--help"],
        capture_output=True,
        text=True,
        timeout=PROCESS_S,
        check=True,
    )
    assert all(option in standalone.stdout for option in SIMULATOR_OPTIONS)


def test_simulate_refuses_a_bad_option_as_argparse_does() -> None:
    unknown = run_cli("simulate", "--no-such-option")
    assert unknown.returncode == 2
    assert "unrecognized arguments: --no-such-option" in unknown.stderr
    bad_value = run_cli("simulate", "--profile", "imaginary")
    assert bad_value.returncode == 2
    assert "argument --profile: invalid choice: 'imaginary'" in bad_value.stderr


async def test_simulate_serves_with_its_options_and_stops_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "simulate",
        "--profile",
        "everything-on",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-agent",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(PROCESS_S):
            line = (await process.stdout.readline()).decode().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(PROCESS_S):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
