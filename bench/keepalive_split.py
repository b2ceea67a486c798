"""How the idle CPU splits between WebSocket pings and Genesys echoes: ``python -m bench.keepalive_split``.

Not part of ``python -m bench``. The capacity benchmark runs ping and echo both every 30 s (an upper
bound: the echo's default is 240 s). This script measures the two apart at N sessions, so the idle
CPU at the default intervals can be derived: one bridge with pings off and the echo every 30 s, one with
both every 30 s; each is read over ``--windows`` whole 30 s windows once every session has passed its
first interval. Prints and writes ``bench/results/keepalive_split.json``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench.common import write_result
from bench.loadgen import LoadGen
from bench.procs import CpuSample, raise_nofile_limit
from bench.stack import Stack
from bench.stats import render_table, spread

__all__ = ["main"]

INTERVAL_S = 30.0


async def _idle(sessions: int, *, ping: bool, windows: int) -> list[float]:
    env = {"BRIDGE_WS_PING_INTERVAL_S": f"{INTERVAL_S:g}" if ping else "", "BRIDGE_ECHO_INTERVAL_S": f"{INTERVAL_S:g}"}
    async with (
        Stack("keepalive", max_sessions=sessions, extra_env=env) as stack,
        LoadGen.of(stack.names) as lg,
    ):
        await lg.start_sessions([f"{stack.prefix}.s{i}" for i in range(sessions)], timeout_s=60 + sessions / 20)
        await asyncio.sleep(INTERVAL_S)
        shares = []
        for _ in range(windows):
            cpu0 = CpuSample.take(stack.pids)
            await asyncio.sleep(INTERVAL_S)
            shares.append(CpuSample.take(stack.pids).share_since(cpu0)["bridge"] * 100)
        return shares


async def _run(sessions: int, windows: int) -> dict[str, Any]:
    raise_nofile_limit()
    echo_only = spread(await _idle(sessions, ping=False, windows=windows))
    both = spread(await _idle(sessions, ping=True, windows=windows))
    echo_share = echo_only.median / both.median if both.median else float("nan")
    return {
        "sessions": sessions,
        "interval_s": INTERVAL_S,
        "idle_cpu_pct_echo_only": echo_only.as_json(),
        "idle_cpu_pct_ping_and_echo": both.as_json(),
        "echo_share_at_equal_intervals": round(echo_share, 3),
        "default_factor": round((1 - echo_share) + echo_share * INTERVAL_S / 240.0, 3),
    }


def main() -> None:
    """``python -m bench.keepalive_split``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--windows", type=int, default=2)
    args = parser.parse_args()
    doc = asyncio.run(_run(args.sessions, args.windows))
    rows = [
        ["echo every 30 s, pings off", f"{doc['idle_cpu_pct_echo_only']['median']:.2f} %"],
        ["ping and echo every 30 s", f"{doc['idle_cpu_pct_ping_and_echo']['median']:.2f} %"],
        ["echo's share at equal intervals", f"{doc['echo_share_at_equal_intervals']:.0%}"],
        ["idle CPU at defaults (ping 30 s, echo 240 s) / measured", f"× {doc['default_factor']}"],
    ]
    print(render_table([f"bridge idle CPU, {doc['sessions']:,} sessions", "% of a core"], rows))
    print(f"wrote {write_result('keepalive_split', doc)}")


if __name__ == "__main__":
    main()
