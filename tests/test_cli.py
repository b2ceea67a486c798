"""The command line as a shell uses it: real ``python -m bridge`` processes, their stdout and exit codes."""

from __future__ import annotations

import os
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
