"""What every benchmark script shares: the broker URL, unique names, the results file, the run id.

A *run* is one ``python -m bench``: it sets ``BENCH_RUN_ID`` and ``BENCH_RUN_STARTED`` for the scripts it
starts, so a script can tell whether ``bench/results/baseline_pipeline.json`` was measured in the same
run (the only baseline a ratio may use) or must measure it again itself.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.machine import describe_machine

__all__ = [
    "AMQP_URL",
    "RESULTS_DIR",
    "ensure_same_run_baseline",
    "free_port",
    "load_result",
    "run_id",
    "unique_prefix",
    "write_result",
]

AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def run_id() -> str:
    """This run's id (set by ``python -m bench``; a fresh one for a script run alone)."""
    return os.environ.setdefault("BENCH_RUN_ID", uuid.uuid4().hex[:8])


def _run_started() -> float:
    return float(os.environ.setdefault("BENCH_RUN_STARTED", str(time.time())))


def unique_prefix(name: str) -> str:
    """``bench.<name>.<run>.<random>``: exchanges and queues no other run or test can see."""
    return f"bench.{name}.{run_id()}.{uuid.uuid4().hex[:6]}"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (for BRIDGE_HTTP_PORT)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` with the machine and run id added; returns the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    doc = {"benchmark": name, "run_id": run_id(), "machine": describe_machine(), **payload}
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def load_result(name: str) -> dict[str, Any] | None:
    """``bench/results/<name>.json`` if it exists."""
    path = RESULTS_DIR / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def ensure_same_run_baseline(timeout_s: float = 120.0) -> dict[str, Any]:
    """The baseline pipeline's results measured in this run; runs ``bench.baseline_pipeline`` if needed.

    ``bench/baseline_pipeline.py`` writes no run id, so "same run" means: written after this run started.
    """
    started = _run_started()
    path = RESULTS_DIR / "baseline_pipeline.json"
    if not path.exists() or path.stat().st_mtime < started:
        print("(measuring the baseline pipeline first: ratios need a baseline from the same run)", flush=True)
        subprocess.run(  # our own interpreter and module
            [sys.executable, "-m", "bench.baseline_pipeline"], check=True, timeout=timeout_s
        )
    data = load_result("baseline_pipeline")
    assert data is not None
    return data
