"""Benchmark: what the reorder window costs in latency (``BRIDGE_REORDER_WINDOW_S``).

Genesys promises no ordering of agent messages (docs/genesys-protocol.md §10); with the window on, each
live message is held up to the window so that messages are published in ``channel.time`` order. Two
stacks run the same paced agent load (fan-in's latency repetition: agent send → ``message.received``
arrival): one with the window off (the yardstick, measured in the same run) and one with it on. The cost
is the difference of the two, median [min–max] over repetitions.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import run_and_report
from bench.fanin import paced_rep
from bench.loadgen import LoadGen
from bench.procs import raise_nofile_limit
from bench.stack import Stack, bridge_available
from bench.stats import Spread, render_table, spread

__all__ = ["main", "run"]

NAME = "reorder"


async def _latencies(window_s: float, *, sessions: int, rate: float, seconds: float, reps: int) -> list[dict[str, Any]]:
    env = {"BRIDGE_REORDER_WINDOW_S": str(window_s)}
    async with (
        Stack(f"{NAME}-{window_s:g}", max_sessions=sessions, extra_env=env) as stack,
        LoadGen.of(stack.names) as lg,
    ):
        await lg.start_sessions([f"{stack.prefix}.s{i}" for i in range(sessions)], timeout_s=120)
        await lg.follow("message.received.#")
        reps_out = []
        for rep in range(reps):
            result = await paced_rep(stack, lg, rate, seconds)
            print(
                f"  window {window_s:g}s rep {rep + 1}: p50 {result['p50_ms']} ms p99 {result['p99_ms']} ms", flush=True
            )
            reps_out.append(result)
        return reps_out


async def run(*, sessions: int, rate: float, seconds: float, reps: int, window_s: float) -> dict[str, Any]:
    """Both stacks, one after the other; returns the results document."""
    missing = bridge_available()
    if missing is not None:
        return {"status": "not available yet", "reason": missing}
    raise_nofile_limit()
    off = await _latencies(0.0, sessions=sessions, rate=rate, seconds=seconds, reps=reps)
    on = await _latencies(window_s, sessions=sessions, rate=rate, seconds=seconds, reps=reps)
    summary = {
        f"{label}_{m}": spread(r[m] for r in runs).as_json()
        for label, runs in (("off", off), ("on", on))
        for m in ("p50_ms", "p99_ms")
    }
    summary["cost_p50_ms"] = spread(b["p50_ms"] - a["p50_ms"] for a, b in zip(off, on, strict=True)).as_json()
    summary["cost_p99_ms"] = spread(b["p99_ms"] - a["p99_ms"] for a, b in zip(off, on, strict=True)).as_json()
    return {
        "status": "ok",
        "options": {"sessions": sessions, "rate": rate, "seconds": seconds, "reps": reps, "window_s": window_s},
        "summary": summary,
        "off_reps": off,
        "on_reps": on,
    }


def render(doc: dict[str, Any]) -> str:
    """The printed table."""
    if doc["status"] != "ok":
        return f"reorder: {doc['status']}: {doc['reason']}"
    s, o = doc["summary"], doc["options"]

    def sp(d: dict[str, Any]) -> str:
        return Spread.of(d).fmt(1)

    rows = [
        ["window off: p50 / p99, ms", f"{sp(s['off_p50_ms'])} / {sp(s['off_p99_ms'])}"],
        [f"window {o['window_s']:g} s: p50 / p99, ms", f"{sp(s['on_p50_ms'])} / {sp(s['on_p99_ms'])}"],
        ["cost of the window: p50 / p99, ms", f"{sp(s['cost_p50_ms'])} / {sp(s['cost_p99_ms'])}"],
    ]
    title = f"reorder window ({o['sessions']} sessions, {o['rate']:g} agent msgs/s)"
    return render_table([title, "median [min–max]"], rows)


def main() -> None:
    """``python -m bench.reorder``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0, help="agent messages per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--window", type=float, default=0.25, help="BRIDGE_REORDER_WINDOW_S of the second stack")
    args = parser.parse_args()
    run_and_report(
        NAME,
        lambda: run(sessions=args.sessions, rate=args.rate, seconds=args.seconds, reps=args.reps, window_s=args.window),
        render,
    )


if __name__ == "__main__":
    main()
