"""Benchmark 3: capacity. N = 1k, 5k, 10k live sessions in one bridge process.

Each repetition starts a fresh simulator and bridge, reads the bridge's idle RSS, then opens sessions in
steps up to 1,000, 5,000 and 10,000 (``session.start`` commands, pipelined) and, at each step, after a
short settle, reads:

- RSS per session = (RSS now − RSS before any session) / N, from ``/proc/<pid>/status`` VmRSS;
- the time to open the step (and the cumulative time to open all N);
- idle CPU of the bridge (and the simulator) over a fixed window with every keepalive running: one
  WebSocket ping interval (``BRIDGE_WS_PING_INTERVAL_S``, 30 s by default) at the largest N, so each
  connection pings about once in the window; shorter windows at the smaller steps.

WebSocket compression: off on both sides (the bridge's connector passes ``compression=None``; the
simulator offers no permessage-deflate). With the library's default deflate a connection holds about
71 KiB instead of 22 KiB (``perf-baseline.md``): 10,000 sessions could not fit 30 KiB each. The
messages are small JSON, so deflate would save little bandwidth.

The soft file-descriptor limit is raised to the hard limit here; children inherit it.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench.common import AMQP_URL, write_result
from bench.loadgen import LoadGen
from bench.procs import CpuSample, raise_nofile_limit
from bench.stack import Stack, bridge_available
from bench.stats import Spread, render_table, spread

__all__ = ["main", "run"]

NAME = "capacity"
SETTLE_S = 3.0


async def one_rep(steps: list[int], idle_windows: list[float]) -> list[dict[str, Any]]:
    """One repetition over all steps; returns one row per step."""
    rows: list[dict[str, Any]] = []
    async with (
        Stack(NAME, max_sessions=steps[-1]) as stack,
        LoadGen(AMQP_URL, command_exchange=stack.command_exchange, event_exchange=stack.event_exchange) as lg,
    ):
        await asyncio.sleep(SETTLE_S)
        rss0 = stack.bridge_rss()
        opened = 0
        total_open_s = 0.0
        for n, window in zip(steps, idle_windows, strict=True):
            ids = [f"{stack.prefix}.s{i}" for i in range(opened, n)]
            open_s = await lg.start_sessions(ids, timeout_s=60 + len(ids) / 20)
            total_open_s += open_s
            opened = n
            await asyncio.sleep(SETTLE_S)  # let the last handshakes' buffers be freed before reading RSS
            states = await stack.sessions_by_state()
            cpu0 = CpuSample.take(stack.pids)
            await asyncio.sleep(window)
            cpu = CpuSample.take(stack.pids).share_since(cpu0)
            rss = stack.bridge_rss()
            row = {
                "sessions": n,
                "sessions_by_state": states,
                "rss_idle_mib": round(rss0 / 2**20, 1),
                "rss_mib": round(rss / 2**20, 1),
                "rss_kib_per_session": round((rss - rss0) / n / 1024, 2),
                "open_step_s": round(open_s, 2),
                "open_step_per_s": round(len(ids) / open_s, 1),
                "open_all_s": round(total_open_s, 2),
                "idle_window_s": window,
                "idle_cpu_pct_bridge": round(cpu["bridge"] * 100, 2),
                "idle_cpu_pct_simulator": round(cpu["simulator"] * 100, 2),
            }
            print(
                f"  N={n}: {row['rss_kib_per_session']} KiB/session, opened in {row['open_all_s']} s, "
                f"idle CPU {row['idle_cpu_pct_bridge']} % ({window:.0f} s)",
                flush=True,
            )
            rows.append(row)
    return rows


async def run(*, steps: list[int], reps: int, idle_windows: list[float]) -> dict[str, Any]:
    """The whole benchmark; returns the results document."""
    missing = bridge_available()
    soft, hard = raise_nofile_limit()
    if missing is not None:
        return {"status": "not available yet", "reason": missing}
    if hard < steps[-1] + 1000:
        return {"status": "not possible here", "reason": f"RLIMIT_NOFILE hard limit {hard} < {steps[-1] + 1000}"}
    reps_rows = []
    for rep in range(reps):
        print(f"capacity rep {rep + 1}/{reps}", flush=True)
        reps_rows.append(await one_rep(steps, idle_windows))
    by_n: dict[str, dict[str, Any]] = {}
    for i, n in enumerate(steps):
        rows = [r[i] for r in reps_rows]
        by_n[str(n)] = {
            k: spread(r[k] for r in rows).as_json()
            for k in ("rss_kib_per_session", "open_all_s", "open_step_per_s", "idle_cpu_pct_bridge", "rss_mib")
        }
        by_n[str(n)]["idle_window_s"] = idle_windows[i]
    top = by_n[str(steps[-1])]
    return {
        "status": "ok",
        "options": {"steps": steps, "reps": reps, "idle_windows_s": idle_windows, "nofile": [soft, hard]},
        "websocket_compression": (
            "off: the bridge connects with compression=None and the simulator offers no permessage-deflate; "
            "default deflate costs ~71 KiB per connection instead of ~22 KiB (perf-baseline.md)"
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

    def sp(d: dict[str, Any], digits: int = 1) -> str:
        return Spread(d["median"], d["min"], d["max"], d["n"]).fmt(digits)

    rows = [
        [
            n,
            sp(d["rss_kib_per_session"]),
            sp(d["rss_mib"], 0),
            sp(d["open_all_s"]),
            sp(d["open_step_per_s"], 0),
            f"{sp(d['idle_cpu_pct_bridge'], 2)} ({d['idle_window_s']:.0f} s)",
        ]
        for n, d in doc["summary"].items()
    ]
    return render_table(
        ["sessions", "RSS KiB/session", "RSS MiB", "time to open all, s", "opens/s (step)", "idle CPU % of a core"],
        rows,
    )


def main() -> None:
    """``python -m bench.capacity``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="1000,5000,10000", help="cumulative session counts")
    parser.add_argument("--idle", default="10,10,30", help="idle CPU window per step, seconds")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    steps = [int(x) for x in args.steps.split(",")]
    idle = [float(x) for x in args.idle.split(",")]
    doc = asyncio.run(run(steps=steps, reps=args.reps, idle_windows=idle))
    print(render(doc))
    print(f"wrote {write_result(NAME, doc)}")


if __name__ == "__main__":
    main()
