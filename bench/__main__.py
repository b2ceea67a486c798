"""``python -m bench`` (``make bench``): run every benchmark in turn, unattended, in under 15 minutes.

Each benchmark runs as its own process (``python -m bench.<name>``) with a time limit. On expiry its
whole process group is killed (its own children die with it: see ``bench.procs``), the exchanges,
queues and streams it left on the broker are deleted (every benchmark names its own
``bench.<name>.<run>.*``: ``bench.common.unique_prefix``), and the suite goes on. The baseline runs
first, so every ratio uses a baseline measured in the same run. At the end the summary table (targets
vs figures) is printed and written to ``bench/results/summary.md``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

from bench.common import AMQP_URL, RESULTS_DIR
from bench.report import machine_line, summary_table
from bridge.amqp.tools import delete_names

__all__ = ["BUDGET_S", "SCRIPTS", "main"]

#: The whole suite's time budget: it must finish in under 15 minutes.
BUDGET_S = 14 * 60
#: (module, time limit in seconds, extra arguments), in order. Capacity goes last: it fits its number of
#: repetitions into what is left of the budget (``BENCH_DEADLINE``) and says how many ran.
SCRIPTS: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("bench.baseline_pipeline", 90, ()),
    ("bench.throughput", 240, ()),
    ("bench.fanin", 150, ()),
    ("bench.recovery", 300, ()),  # 3 kills, each a minute after the last connects
    # Scale-out, at quick sizes (the full-size runs and their commands are in docs/performance.md).
    ("bench.router", 120, ("--commands", "5000")),
    ("bench.failover", 150, ("--sessions", "300", "--reps", "1", "--settle-s", "10")),
    ("bench.capacity", 600, ("--windows", "3")),
)


def _run(module: str, limit_s: float, args: tuple[str, ...], env: dict[str, str]) -> str:
    proc = subprocess.Popen([sys.executable, "-m", module, *args], env=env, start_new_session=True)
    try:
        code = proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        swept = _sweep(env["BENCH_RUN_ID"])
        return f"killed after {limit_s:.0f} s ({swept} broker objects it left deleted)"
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return "ok" if code == 0 else f"exit code {code}"


def _sweep(run: str) -> int:
    """Delete the exchanges and queues of run ``run`` that a killed benchmark could not clean up (its
    clean-up runs on exit, and SIGKILL skips it). Benchmarks run one at a time, so only the killed one's
    are left. Lists them with ``rabbitmqctl``: the benchmarks measure a broker on this machine. Returns how
    many it deleted."""
    mine = f".{run}."

    def listed(kind: str) -> tuple[str, ...]:
        out = subprocess.run(
            ["rabbitmqctl", "-q", "--no-table-headers", f"list_{kind}", "name"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return tuple(name for name in out.split() if name.startswith("bench.") and mine in name)

    queues, exchanges = listed("queues"), listed("exchanges")
    asyncio.run(delete_names(AMQP_URL, exchanges=exchanges, queues=queues))
    return len(queues) + len(exchanges)


def main() -> int:
    """Run the suite; returns 0 when every script finished (targets missed are reported, not failed)."""
    started = time.time()
    run_id = uuid.uuid4().hex[:8]
    env = {**os.environ, "BENCH_RUN_ID": run_id, "BENCH_DEADLINE": str(started + BUDGET_S - 15)}
    only = set(sys.argv[1:])
    statuses: dict[str, str] = {}
    for module, limit_s, args in SCRIPTS:
        if only and module.removeprefix("bench.") not in only:
            continue
        left = BUDGET_S - (time.time() - started)
        if left < 20:
            statuses[module] = "skipped: the suite's time budget is spent"
            continue
        print(f"\n=== {module} (limit {min(limit_s, left):.0f} s) ===", flush=True)
        statuses[module] = _run(module, min(limit_s, left), args, env)
        print(f"--- {module}: {statuses[module]} ({time.time() - started:.0f} s into the run)", flush=True)
    print(f"\n=== summary (run {run_id}, {time.time() - started:.0f} s) ===")
    for module, status in statuses.items():
        print(f"  {module}: {status}")
    text = machine_line(run_id) + "\n\n" + summary_table(run_id)
    print(text)
    (RESULTS_DIR / "summary.md").write_text(text + "\n", encoding="utf-8")
    return 0 if all(s == "ok" for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
