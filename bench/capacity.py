"""Benchmark 3: capacity. N = 1k, 5k, 10k live sessions in one bridge process.

Each repetition starts a fresh simulator and bridge, reads the bridge's idle RSS, then opens sessions in
steps up to 1,000, 5,000 and 10,000 (``session.start`` commands, pipelined) and, at each step, after a
short settle, reads:

- RSS per session = (RSS now − RSS before any session) / N, from ``/proc/<pid>/status`` VmRSS;
- the time to open the step (and the cumulative time to open all N). The sessions are spread round-robin
  over N / 1,000 deployments: Genesys allows 1,000 new connections per deployment per minute (§8) and
  the bridge keeps to it (``BRIDGE_GENESYS_CONNECTS_PER_MIN``), so one deployment would need 10 minutes.
- at the largest N only, idle CPU of the bridge (and the simulator, and the rest of the machine) over a
  fixed window of one keepalive interval, opened once every session has passed its first interval, so
  each connection pings and echoes once in the window. By default the run sets both the WebSocket ping and
  the Genesys ``echo`` to 30 s (the echo default is 240 s), so the figure is an upper bound for the
  defaults; ``--ping 30 --echo 240`` measures the defaults themselves, over a 240 s window.

WebSocket compression: off on both sides (the bridge's connector passes ``compression=None``; the
simulator offers no permessage-deflate). With the library's default deflate a connection holds about
71 KiB instead of 22 KiB (docs/performance.md): 10,000 sessions could not fit 30 KiB each. The
messages are small JSON, so deflate would save little bandwidth.

The soft file-descriptor limit is raised to the hard limit here; children inherit it. Under
``python -m bench`` the script stops adding repetitions when the next one would overrun the suite's
15-minute budget (``BENCH_DEADLINE``); the results then say how many ran (``n``). The suite passes
``--windows 3``: three consecutive idle windows per repetition, so the idle CPU figure has three samples
even when only one repetition fits; ``python -m bench.capacity`` alone runs three full repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench.common import run_and_report
from bench.loadgen import LoadGen
from bench.procs import CpuSample, raise_nofile_limit
from bench.stack import Stack, bridge_available
from bench.stats import Spread, render_table, spread

__all__ = ["main", "run"]

NAME = "capacity"
SETTLE_S = 3.0
#: Genesys allows 1,000 new connections per deployment per minute (§8) and the bridge enforces it, so
#: 10,000 sessions are spread over 10 deployments, as a fleet that size would be.
SESSIONS_PER_DEPLOYMENT = 1000


@dataclass(frozen=True, slots=True)
class Keepalives:
    """The run's WebSocket ping and Genesys echo intervals (the bridge's defaults are 30 s and 240 s)."""

    ping_s: float
    echo_s: float

    @property
    def longest(self) -> float:
        """One whole keepalive cycle: every connection pings and echoes at least once in it."""
        return max(self.ping_s, self.echo_s)

    def env(self) -> dict[str, str]:
        """The bridge's settings for these intervals."""
        return {"BRIDGE_WS_PING_INTERVAL_S": f"{self.ping_s:g}", "BRIDGE_ECHO_INTERVAL_S": f"{self.echo_s:g}"}


async def one_rep(steps: list[int], keepalives: Keepalives, idle_window_s: float, windows: int) -> list[dict[str, Any]]:
    """One repetition over all steps; returns one row per step (idle CPU on the last step only)."""
    rows: list[dict[str, Any]] = []
    env = keepalives.env()
    deployments = math.ceil(steps[-1] / SESSIONS_PER_DEPLOYMENT)
    async with (
        Stack(NAME, max_sessions=steps[-1], extra_env=env) as stack,
        LoadGen.of(stack.names) as lg,
    ):
        loop = asyncio.get_running_loop()
        await asyncio.sleep(SETTLE_S)
        rss0 = stack.bridge_rss()
        opened = 0
        total_open_s = 0.0
        for n in steps:
            ids = [f"{stack.prefix}.s{i}" for i in range(opened, n)]
            cpu0 = CpuSample.take(stack.pids)
            open_s = await lg.start_sessions(ids, timeout_s=60 + len(ids) / 20, deployments=deployments)
            open_cpu = CpuSample.take(stack.pids).share_since(cpu0)
            last_open = loop.time()
            total_open_s += open_s
            opened = n
            await asyncio.sleep(SETTLE_S)  # let the last handshakes' buffers be freed before reading RSS
            rss = stack.bridge_rss()
            row: dict[str, Any] = {
                "sessions": n,
                "rss_idle_mib": round(rss0 / 2**20, 1),
                "rss_mib": round(rss / 2**20, 1),
                "rss_kib_per_session": round((rss - rss0) / n / 1024, 2),
                "open_step_s": round(open_s, 2),
                "open_step_per_s": round(len(ids) / open_s, 1),
                "open_all_s": round(total_open_s, 2),
                "open_cpu_share": {k: round(v, 3) for k, v in open_cpu.items()},
            }
            if n == steps[-1]:
                # Steady state: every session has passed its first keepalive interval before the window opens.
                await asyncio.sleep(max(0.0, keepalives.longest - (loop.time() - last_open)))
                idle: list[dict[str, float]] = []
                for _ in range(windows):  # consecutive windows: each is one full keepalive cycle
                    cpu0 = CpuSample.take(stack.pids)
                    await asyncio.sleep(idle_window_s)
                    idle.append(CpuSample.take(stack.pids).share_since(cpu0))
                row["sessions_by_state"] = await stack.sessions_by_state()
                row["rss_after_idle_mib"] = round(stack.bridge_rss() / 2**20, 1)
                row["idle_windows"] = [
                    {k: round(v * 100, 2) for k, v in w.items() if k in ("bridge", "simulator", "other")} for w in idle
                ]
                for who in ("bridge", "simulator", "other"):
                    row[f"idle_cpu_pct_{who}"] = round(statistics.median(w[who] for w in idle) * 100, 2)
            print(
                f"  N={n}: {row['rss_kib_per_session']} KiB/session, all open after {row['open_all_s']} s "
                f"({row['open_step_per_s']:.0f}/s, bridge CPU {open_cpu['bridge']:.2f} cores while opening)"
                + (f", idle CPU {row['idle_cpu_pct_bridge']} %" if "idle_cpu_pct_bridge" in row else ""),
                flush=True,
            )
            rows.append(row)
    return rows


async def run(
    *, steps: list[int], reps: int, keepalives: Keepalives, idle_window_s: float, windows: int = 1
) -> dict[str, Any]:
    """The whole benchmark; returns the results document."""
    missing = bridge_available()
    soft, hard = raise_nofile_limit()
    if missing is None and float(os.environ.get("BENCH_DEADLINE", "inf")) < time.time() + steps[-1] / 80:
        missing = "no time left in the suite's budget for one repetition"
    if missing is not None:
        return {"status": "not available yet", "reason": missing}
    if hard < steps[-1] + 1000:
        return {"status": "not possible here", "reason": f"RLIMIT_NOFILE hard limit {hard} < {steps[-1] + 1000}"}
    reps_rows: list[list[dict[str, Any]]] = []
    rep_s: list[float] = []
    deadline = float(os.environ.get("BENCH_DEADLINE", "inf"))  # set by python -m bench (the 15-minute budget)
    for rep in range(reps):
        # A first repetition's length is guessed (opening at ~80/s, the keepalive wait, the window).
        expected = max(rep_s) * 1.1 if rep_s else steps[-1] / 80 + keepalives.longest + windows * idle_window_s + 20
        if time.time() + expected > deadline:
            print(f"capacity: {rep} repetitions: the next would overrun the suite's time budget", flush=True)
            break
        print(f"capacity rep {rep + 1}/{reps}", flush=True)
        started = time.time()
        reps_rows.append(await one_rep(steps, keepalives, idle_window_s, windows))
        rep_s.append(time.time() - started)
    if not reps_rows:  # a slow machine spent the suite's budget before this step: say so, no figures
        left_s = max(0.0, deadline - time.time())
        return {"status": "skipped", "reason": f"no repetition fits the {left_s:.0f} s left of the suite's budget"}
    by_n: dict[str, dict[str, Any]] = {}
    for i, n in enumerate(steps):
        rows = [r[i] for r in reps_rows]
        keys = ["rss_kib_per_session", "open_all_s", "open_step_per_s", "rss_mib"]
        by_n[str(n)] = {k: spread(r[k] for r in rows).as_json() for k in keys}
        if n == steps[-1]:  # every idle window of every repetition is one sample
            for who in ("bridge", "simulator", "other"):
                samples = [w[who] for r in rows for w in r["idle_windows"]]
                by_n[str(n)][f"idle_cpu_pct_{who}"] = spread(samples).as_json()
        by_n[str(n)]["open_cpu_bridge_cores"] = spread(r["open_cpu_share"]["bridge"] for r in rows).as_json()
    top = by_n[str(steps[-1])]
    return {
        "status": "ok",
        "options": {
            "steps": steps,
            "reps": len(reps_rows),
            "reps_asked": reps,
            "rep_seconds": [round(x, 1) for x in rep_s],
            "ping_interval_s": keepalives.ping_s,
            "echo_interval_s": keepalives.echo_s,
            "idle_window_s": idle_window_s,
            "idle_windows_per_rep": windows,
            "nofile": [soft, hard],
        },
        "deployments": math.ceil(steps[-1] / SESSIONS_PER_DEPLOYMENT),
        "keepalives": (
            f"WebSocket ping every {keepalives.ping_s:g} s and Genesys echo every {keepalives.echo_s:g} s "
            "(BRIDGE_WS_PING_INTERVAL_S, BRIDGE_ECHO_INTERVAL_S; the defaults are 30 s and 240 s). The window "
            "opens after every session passed its first interval of both."
        ),
        "websocket_compression": (
            "off: the bridge connects with compression=None and the simulator offers no permessage-deflate; "
            "default deflate costs ~71 KiB per connection instead of ~22 KiB (docs/performance.md)"
        ),
        "summary": by_n,
        "targets": {
            "sessions": steps[-1],
            "rss_kib_per_session_max": 30.0,
            "idle_cpu_pct_max": 10.0,
            "rss_met": top["rss_kib_per_session"]["median"] <= 30.0,
            "idle_cpu_met": top["idle_cpu_pct_bridge"]["median"] < 10.0,
        },
        "reps": reps_rows,
    }


def render(doc: dict[str, Any]) -> str:
    """The printed table."""
    if doc["status"] != "ok":
        return f"capacity: {doc['status']}: {doc['reason']}"

    def sp(d: dict[str, Any] | None, digits: int = 1) -> str:
        return "—" if d is None else Spread.of(d).fmt(digits)

    window = doc["options"]["idle_window_s"]
    rows = [
        [
            n,
            sp(d["rss_kib_per_session"]),
            sp(d["rss_mib"], 0),
            sp(d["open_all_s"]),
            sp(d["open_step_per_s"], 0),
            sp(d["open_cpu_bridge_cores"], 2),
            sp(d.get("idle_cpu_pct_bridge"), 2) + (f" ({window:.0f} s)" if "idle_cpu_pct_bridge" in d else ""),
        ]
        for n, d in doc["summary"].items()
    ]
    return render_table(
        [
            "sessions",
            "RSS KiB/session",
            "RSS MiB",
            "time to open all, s",
            "opens/s (step)",
            "bridge cores while opening",
            "idle CPU % of a core",
        ],
        rows,
    )


def main() -> None:
    """``python -m bench.capacity``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="1000,5000,10000", help="cumulative session counts")
    parser.add_argument("--keepalive", type=float, default=30.0, help="ping and echo interval for the run, s")
    parser.add_argument("--ping", type=float, help="WebSocket ping interval, s (default: --keepalive)")
    parser.add_argument("--echo", type=float, help="Genesys echo interval, s (default: --keepalive)")
    parser.add_argument("--idle", type=float, help="idle CPU window at the largest N, s (default: the longest)")
    parser.add_argument("--windows", type=int, default=1, help="consecutive idle windows per repetition")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--result", default=NAME, help="results file name (bench/results/<name>.json)")
    args = parser.parse_args()
    steps = [int(x) for x in args.steps.split(",")]
    keepalives = Keepalives(ping_s=args.ping or args.keepalive, echo_s=args.echo or args.keepalive)
    window = args.idle or keepalives.longest
    run_and_report(
        args.result,
        lambda: run(steps=steps, reps=args.reps, keepalives=keepalives, idle_window_s=window, windows=args.windows),
        render,
    )


if __name__ == "__main__":
    main()
