"""What every benchmark script shares: the broker URL, unique names, the results file, the run id.

A *run* is one ``python -m bench``: it sets ``BENCH_RUN_ID`` for the scripts it starts, and every results
file carries it, so the summary only ever puts figures of one run side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench.machine import describe_machine
from bench.stats import against

__all__ = [
    "AMQP_URL",
    "RESULTS_DIR",
    "free_port",
    "load_result",
    "micro_main",
    "run_id",
    "unique_prefix",
    "us_per_call",
    "write_result",
]

AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def run_id() -> str:
    """This run's id (set by ``python -m bench``; a fresh one for a script run alone)."""
    return os.environ.setdefault("BENCH_RUN_ID", uuid.uuid4().hex[:8])


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


def us_per_call(call: Callable[[], object], n: int) -> float:
    """µs per call of ``call`` over ``n`` calls in a row: the timing loop of the in-process micro-benchmarks."""
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e6


def run_and_report(
    name: str, run: Callable[[], Coroutine[Any, Any, dict[str, Any]]], render: Callable[[dict[str, Any]], str]
) -> None:
    """Run one benchmark, print its table, write its JSON; exit 1 if it failed.

    A failure is written to the results file too (``status: failed`` with the reason), so the suite
    goes on and the report says what broke.
    """
    try:
        doc = asyncio.run(run())
    except Exception as exc:
        doc = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    print(render(doc))
    print(f"wrote {write_result(name, doc)}")
    if doc["status"] == "failed":
        sys.exit(1)


#: An alternating micro-benchmark: its options' values in order → per way, its samples.
MicroRun = Callable[..., Coroutine[Any, Any, dict[str, list[float]]]]


def micro_main(description: str, options: dict[str, int], run: MicroRun, *, reference: str, unit: str) -> None:
    """The command line of a micro-benchmark that alternates ways in one process: parse ``options`` (each
    ``--name`` with its default), run ``run(*values)`` on uvloop, print each way against ``reference``."""
    from bridge.eventloop import choose_loop  # here: the other scripts import this module without the daemon

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in options.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    args = vars(parser.parse_args())
    with asyncio.Runner(loop_factory=choose_loop("uvloop").factory) as runner:
        samples = runner.run(run(*(args[name.replace("-", "_")] for name in options)))
    print("\n".join(against(samples, reference, unit)))
