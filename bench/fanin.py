"""Benchmark 4: inbound fan-in. Agent messages from the simulator become ``message.received`` events.

Across 1,000 live sessions:

- **Saturation** (burst, the inbound mirror of the baseline's pre-filled queue): the simulator's agent
  sends ``M`` messages round-robin as fast as it can (in its own process, no HTTP per message), and the
  clock runs from that request to the ``M``-th ``message.received`` arriving at the load generator.
- **Latency** at 50 % of that rate: the agent sends at a steady rate for ``--seconds``; each message's
  text carries the simulator's CLOCK_MONOTONIC stamp, so latency = agent send → event arrival.

The yardstick is the baseline pipeline's event publish rate (it publishes one confirmed event per
command), measured in repetitions interleaved with the bridge's (``bench/baseline_rep.py``). The baseline
also consumes and acks a command per event, so the bridge's fan-in path has less to do than the baseline
it is compared with.
"""

from __future__ import annotations

import argparse
import asyncio
import math
from typing import Any

from bench.baseline_rep import measure
from bench.common import run_and_report
from bench.loadgen import LoadGen
from bench.procs import CpuSample, raise_nofile_limit
from bench.stack import Stack, bridge_available
from bench.stats import percentile, ratio, render_table, shown, spread

__all__ = ["main", "run"]

NAME = "fanin"


async def burst_rep(stack: Stack, lg: LoadGen, messages: int) -> dict[str, Any]:
    """One saturation repetition: ``messages`` agent messages at once; returns its figures."""
    tally = lg.new_tally()
    loop = asyncio.get_running_loop()
    cpu0 = CpuSample.take(stack.pids)
    t0 = loop.time()
    await stack.control("/bench/say", {"count": messages})
    complete = await lg.wait_arrived(messages, timeout_s=30 + messages / 50)
    elapsed = loop.time() - t0
    cpu = CpuSample.take(stack.pids).share_since(cpu0)
    return {
        "messages": messages,
        "arrived": tally.arrived,
        "complete": complete,
        "seconds": round(elapsed, 3),
        "messages_per_s": round(tally.arrived / elapsed, 1),
        "p50_ms": round(percentile(tally.latencies, 50) * 1000, 1),
        "max_ms": round(max(tally.latencies, default=math.nan) * 1000, 1),
        "bridge_cpu_us_per_message": round(cpu["bridge"] * elapsed / max(tally.arrived, 1) * 1e6, 1),
        "cpu_share": {k: round(v, 3) for k, v in cpu.items()},
    }


async def paced_rep(stack: Stack, lg: LoadGen, rate: float, seconds: float) -> dict[str, Any]:
    """One latency repetition: the agent speaks at ``rate`` messages/s for ``seconds``."""
    tally = lg.new_tally()
    cpu0 = CpuSample.take(stack.pids)
    sent = int((await stack.control("/bench/say_paced", {"rate": rate, "duration_s": seconds}))["sent"])
    complete = await lg.wait_arrived(sent, timeout_s=30)
    cpu = CpuSample.take(stack.pids).share_since(cpu0)
    lat = tally.latencies
    return {
        "rate": round(rate, 1),
        "sent": sent,
        "arrived": tally.arrived,
        "complete": complete,
        "p50_ms": round(percentile(lat, 50) * 1000, 2),
        "p99_ms": round(percentile(lat, 99) * 1000, 2),
        "max_ms": round(max(lat, default=math.nan) * 1000, 2),
        "cpu_share": {k: round(v, 3) for k, v in cpu.items()},
    }


async def run(*, sessions: int, messages: int, reps: int, seconds: float) -> dict[str, Any]:
    """The whole benchmark; returns the results document."""
    missing = bridge_available()
    if missing is not None:
        return {"status": "not available yet", "reason": missing}
    raise_nofile_limit()
    async with (
        Stack(NAME, max_sessions=sessions) as stack,
        LoadGen.of(stack.names) as lg,
    ):
        ids = [f"{stack.prefix}.s{i}" for i in range(sessions)]
        open_s = await lg.start_sessions(ids, timeout_s=120)
        print(f"{sessions} sessions live after {open_s:.1f} s", flush=True)
        await lg.follow("message.received.#")
        bursts, baseline_reps = [], []
        for rep in range(reps):  # interleaved with the baseline, as in bench/throughput.py
            base_rep = await measure(messages, sessions=sessions)
            baseline_reps.append(base_rep)
            result = await burst_rep(stack, lg, messages)
            result["pair_ratio"] = round(result["messages_per_s"] / base_rep["commands_per_s"], 3)
            print(
                f"  rep {rep + 1}: baseline {base_rep['commands_per_s']:.0f} events/s, bridge "
                f"{result['messages_per_s']:.0f} msgs/s",
                flush=True,
            )
            bursts.append(result)
        sat = spread(r["messages_per_s"] for r in bursts)
        base = spread(r["commands_per_s"] for r in baseline_reps)
        paced = []
        for rep in range(reps):
            result = await paced_rep(stack, lg, 0.5 * sat.median, seconds)
            print(f"  50% rep {rep + 1}: p50 {result['p50_ms']} ms p99 {result['p99_ms']} ms", flush=True)
            paced.append(result)
    cpu_keys = ("bridge", "simulator", "rabbitmq", "loadgen", "other")
    the_ratio = ratio(sat, base)
    return {
        "status": "ok",
        "options": {"sessions": sessions, "messages_per_burst": messages, "reps": reps, "latency_seconds": seconds},
        "summary": {
            "bridge_messages_per_s": sat.as_json(),
            "baseline_events_per_s": base.as_json(),
            "ratio_to_baseline": the_ratio.as_json(),
            "pair_ratio": spread(r["pair_ratio"] for r in bursts).as_json(),
            "bridge_cpu_us_per_message": spread(r["bridge_cpu_us_per_message"] for r in bursts).as_json(),
            "cpu_share_at_saturation": {k: spread(r["cpu_share"][k] for r in bursts).as_json() for k in cpu_keys},
            "latency_at_50pct": {
                "rate": spread(r["rate"] for r in paced).as_json(),
                **{m: spread(r[m] for r in paced).as_json() for m in ("p50_ms", "p99_ms", "max_ms")},
            },
        },
        "targets": {"ratio_min": 0.5, "met": the_ratio.median >= 0.5},
        "burst_reps": bursts,
        "baseline_reps": baseline_reps,
        "latency_reps": paced,
    }


def render(doc: dict[str, Any]) -> str:
    """The printed table."""
    if doc["status"] != "ok":
        return f"fan-in: {doc['status']}: {doc['reason']}"
    s = doc["summary"]

    lat = s["latency_at_50pct"]
    rows = [
        ["baseline pipeline, events/s", shown(s["baseline_events_per_s"])],
        ["bridge, message.received/s at saturation", shown(s["bridge_messages_per_s"])],
        ["bridge / baseline (medians)", shown(s["ratio_to_baseline"], 2) + " (target ≥ 0.50)"],
        ["bridge / baseline (interleaved pairs)", shown(s["pair_ratio"], 2)],
        ["bridge CPU per message, µs", shown(s["bridge_cpu_us_per_message"])],
        *([f"CPU at saturation, {k} (cores)", shown(d, 2)] for k, d in s["cpu_share_at_saturation"].items()),
        [
            f"latency at 50% ({lat['rate']['median']:.0f}/s) p50 / p99 / max, ms",
            f"{shown(lat['p50_ms'], 1)} / {shown(lat['p99_ms'], 1)} / {shown(lat['max_ms'], 1)}",
        ],
    ]
    return render_table(["inbound fan-in (1,000 sessions)", "median [min–max]"], rows)


def main() -> None:
    """``python -m bench.fanin``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=4000, help="agent messages per saturation repetition")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of each latency repetition")
    args = parser.parse_args()
    run_and_report(
        NAME, lambda: run(sessions=args.sessions, messages=args.messages, reps=args.reps, seconds=args.seconds), render
    )


if __name__ == "__main__":
    main()
