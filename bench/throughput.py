"""Benchmark 2: throughput and latency through the real bridge across 1,000 live sessions.

- **Saturation** is measured exactly like ``bench/baseline_pipeline.py`` measures its ceiling: ``M``
  ``message.send`` commands wait in the (quorum) intake queue before the clock starts (the daemon is
  paused with SIGSTOP while they are published, then resumed with SIGCONT), and the clock stops when
  the ``M``-th ``command.outcome`` sits in a durable queue bound to the event exchange (polled every
  20 ms, not consumed, as the baseline does not consume its events either). commands/s = M / elapsed.
- **Latency** at 25 %, 50 % and 75 % of that saturation rate: the load generator publishes at a steady
  (open-loop) rate for ``--seconds`` and times each command from its publish to its ``command.outcome
  delivered`` arriving. Commands are spread round-robin over the sessions.
- **CPU split** from ``/proc/<pid>/stat`` deltas: bridge, simulator, RabbitMQ (beam.smp), load generator.
- **System calls**: the daemon's ``write()`` and ``read()`` calls per command at saturation, from
  ``/proc/<pid>/io`` (``syscw``, ``syscr``), whatever their size, so this says how many of its frames went
  out or came in alone. They count the sockets because the daemon runs on uvloop, which writes and reads
  them with ``write``/``writev``/``read`` (asyncio's own loop uses ``send``/``recv``, not counted); the log
  file's writes count too. Unlike the CPU figures they hardly drift.

The simulator runs in its own process with its Genesys rate limits off; the bridge keeps its own
per-session send budget (2 msg/s, Genesys' limit), which M/N = 4 commands per session does not bind
below 2,000 commands/s. The machine is shared and noisy, so baseline and bridge repetitions alternate
(baseline, bridge, baseline, bridge, ...; the baseline is ``bench/baseline_pipeline.py`` with the same M,
N and prefetch, run once per pair by ``bench/baseline_rep.py``) and each pair's ratio is reported too.
- **The durable baseline**, run beside each pair: the same raw pipeline on the daemon's event loop (uvloop),
  doing the broker work of the bridge's guarantees too (``--durable``: a router hop into 16 partition quorum
  queues, two confirmed journal records per command in the partitions' streams). The bridge's ratio to it
  is what the bridge's own code costs; the durable baseline's ratio to the baseline is what the guarantees
  cost on this broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import statistics
from typing import Any

import aio_pika

from bench.baseline_rep import measure
from bench.common import AMQP_URL, run_and_report
from bench.loadgen import LoadGen, message_send
from bench.procs import CpuSample, raise_nofile_limit, syscalls
from bench.stack import Stack, bridge_available
from bench.stats import percentile, ratio, render_table, shown, spread

__all__ = ["main", "run"]

NAME = "throughput"
LEVELS = (0.25, 0.50, 0.75)


async def _count(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    """Messages in ``queue`` (a passive declare on a channel kept open: opening one per poll cost RabbitMQ
    about 1 ms of CPU each, 50 times a second, charged to the bridge's repetitions alone)."""
    declared = await channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count or 0)


async def drain_rep(stack: Stack, lg: LoadGen, sessions: list[str], commands: int) -> dict[str, Any]:
    """One saturation repetition (see the module docstring). Returns its figures."""
    assert stack.bridge is not None
    conn = await aio_pika.connect(AMQP_URL)
    async with conn:
        channel = await conn.channel()
        events = await channel.declare_exchange(stack.names.event_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        drain = await channel.declare_queue(f"{stack.prefix}.drain", durable=True)
        await drain.bind(events, routing_key="command.outcome.#")
        await drain.purge()
        os.kill(stack.bridge.pid, signal.SIGSTOP)
        try:
            await lg.publish_many([message_send(sessions[i % len(sessions)]) for i in range(commands)], timed=False)
            loop = asyncio.get_running_loop()
            cpu0 = CpuSample.take(stack.pids)
            calls0 = syscalls(stack.bridge.pid)
        finally:
            os.kill(stack.bridge.pid, signal.SIGCONT)
        t0 = loop.time()
        done = 0
        counter = await conn.channel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30 + commands / 50):
                while done < commands:
                    await asyncio.sleep(0.02)
                    done = await _count(counter, drain.name)
        await counter.close()
        elapsed = loop.time() - t0
        cpu = CpuSample.take(stack.pids).share_since(cpu0)
        writes, reads = (now - before for now, before in zip(syscalls(stack.bridge.pid), calls0, strict=True))
        statuses: dict[str, int] = {}
        # Read back the outcomes only to count their statuses; aio-pika warns about prefetched messages
        # "lost" when the iterator closes, which is intended here (the queue is deleted next).
        logging.getLogger("aio_pika.queue").setLevel(logging.ERROR)
        async with drain.iterator(no_ack=True) as it:
            for _ in range(done):
                async with asyncio.timeout(10):
                    msg = await anext(it)
                data = json.loads(msg.body)
                key = f"{data.get('status')}/{data.get('reason')}"
                statuses[key] = statuses.get(key, 0) + 1
        await drain.delete(if_unused=False, if_empty=False)
    return {
        "commands": commands,
        "outcomes": done,
        "statuses": statuses,
        "seconds": round(elapsed, 3),
        "commands_per_s": round(done / elapsed, 1),
        "bridge_cpu_us_per_command": round(cpu["bridge"] * elapsed / max(done, 1) * 1e6, 1),
        "cpu_share": {k: round(v, 3) for k, v in cpu.items()},
        # Includes the drain's tail of keepalives and the count's polling window: a few calls per second.
        "bridge_writes_per_command": round(writes / max(done, 1), 2),
        "bridge_reads_per_command": round(reads / max(done, 1), 2),
    }


async def paced_rep(stack: Stack, lg: LoadGen, sessions: list[str], rate: float, seconds: float) -> dict[str, Any]:
    """One latency repetition at ``rate`` commands/s (outcomes followed by the load generator)."""
    tally = lg.new_tally()
    cpu0 = CpuSample.take(stack.pids)
    sent = await lg.publish_paced(lambda i: message_send(sessions[i % len(sessions)]), rate, seconds)
    complete = await lg.wait_arrived(sent, timeout_s=30)
    cpu = CpuSample.take(stack.pids).share_since(cpu0)
    lat = tally.latencies
    return {
        "target_rate": round(rate, 1),
        "sent": sent,
        "delivered": len(lat),
        "failures": dict(tally.failures),
        "missing": sent - tally.arrived - sum(tally.failures.values()),
        "complete": complete,
        "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else math.nan,
        "p50_ms": round(percentile(lat, 50) * 1000, 2),
        "p99_ms": round(percentile(lat, 99) * 1000, 2),
        "max_ms": round(max(lat, default=math.nan) * 1000, 2),
        "cpu_share": {k: round(v, 3) for k, v in cpu.items()},
    }


async def run(*, sessions: int, commands: int, reps: int, seconds: float) -> dict[str, Any]:
    """The whole benchmark; returns the results document (without machine/run id)."""
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
        saturation, baseline_reps, durable_reps = [], [], []
        for rep in range(reps):  # interleaved: baseline, durable baseline, bridge, baseline, ...
            base_rep = await measure(commands, sessions=sessions)
            baseline_reps.append(base_rep)
            durable_rep = await measure(commands, sessions=sessions, durable=True, loop="uvloop")
            durable_reps.append(durable_rep)
            result = await drain_rep(stack, lg, ids, commands)
            result["pair_ratio"] = round(result["commands_per_s"] / base_rep["commands_per_s"], 3)
            result["durable_pair_ratio"] = round(result["commands_per_s"] / durable_rep["commands_per_s"], 3)
            print(
                f"  rep {rep + 1}: baseline {base_rep['commands_per_s']:.0f} cmds/s, durable baseline "
                f"{durable_rep['commands_per_s']:.0f} cmds/s, bridge {result['commands_per_s']:.0f} cmds/s "
                f"{result['statuses']}",
                flush=True,
            )
            saturation.append(result)
        sat = spread(r["commands_per_s"] for r in saturation)
        base = spread(r["commands_per_s"] for r in baseline_reps)
        durable = spread(r["commands_per_s"] for r in durable_reps)
        await lg.follow("command.outcome.#")
        levels: dict[str, list[dict[str, Any]]] = {}
        for level in LEVELS:
            levels[f"{level:.0%}"] = runs = []
            for rep in range(reps):
                result = await paced_rep(stack, lg, ids, level * sat.median, seconds)
                print(
                    f"  {level:.0%} rep {rep + 1}: {result['target_rate']:.0f}/s p50 {result['p50_ms']} ms "
                    f"p99 {result['p99_ms']} ms max {result['max_ms']} ms missing {result['missing']}",
                    flush=True,
                )
                runs.append(result)
    cpu_keys = ("bridge", "simulator", "rabbitmq", "loadgen", "other")
    summary: dict[str, Any] = {
        "sessions": sessions,
        "open_seconds": round(open_s, 2),
        "bridge_commands_per_s": sat.as_json(),
        "baseline_commands_per_s": base.as_json(),
        "ratio_to_baseline": ratio(sat, base).as_json(),
        "pair_ratio": spread(r["pair_ratio"] for r in saturation).as_json(),
        "durable_baseline_commands_per_s": durable.as_json(),
        "durable_baseline_cpu_us_per_command": spread(r["cpu_us_per_command"] for r in durable_reps).as_json(),
        "durable_baseline_rabbitmq_cores": spread(r["broker_cpu_pct"] / 100 for r in durable_reps).as_json(),
        "durable_to_baseline_pairs": spread(
            d["commands_per_s"] / b["commands_per_s"] for d, b in zip(durable_reps, baseline_reps, strict=True)
        ).as_json(),
        "durable_pair_ratio": spread(r["durable_pair_ratio"] for r in saturation).as_json(),
        "bridge_cpu_us_per_command": spread(r["bridge_cpu_us_per_command"] for r in saturation).as_json(),
        "cpu_share_at_saturation": {k: spread(r["cpu_share"][k] for r in saturation).as_json() for k in cpu_keys},
        "bridge_syscalls_per_command": {
            kind: spread(r[f"bridge_{kind}_per_command"] for r in saturation).as_json() for kind in ("writes", "reads")
        },
        "latency": {
            name: {
                "rate": spread(r["target_rate"] for r in runs).as_json(),
                **{m: spread(r[m] for r in runs).as_json() for m in ("p50_ms", "p99_ms", "max_ms")},
                "cpu_share": {k: spread(r["cpu_share"][k] for r in runs).as_json() for k in cpu_keys},
                "missing": sum(r["missing"] for r in runs),
            }
            for name, runs in levels.items()
        },
    }
    return {
        "status": "ok",
        "options": {"sessions": sessions, "commands_per_rep": commands, "reps": reps, "latency_seconds": seconds},
        "summary": summary,
        "targets": {
            "throughput_ratio_min": 0.5,
            "throughput_met": ratio(sat, base).median >= 0.5,
            "p99_at_50pct_max_ms": 50.0,
            "p99_at_50pct_met": summary["latency"]["50%"]["p99_ms"]["median"] <= 50.0,
        },
        "saturation_reps": saturation,
        "baseline_reps": baseline_reps,
        "durable_baseline_reps": durable_reps,
        "latency_reps": levels,
    }


def render(doc: dict[str, Any]) -> str:
    """The printed table."""
    if doc["status"] != "ok":
        return f"throughput: {doc['status']}: {doc['reason']}"
    s = doc["summary"]

    rows: list[list[str]] = [
        ["baseline pipeline, commands/s", shown(s["baseline_commands_per_s"])],
        ["bridge, commands/s at saturation", shown(s["bridge_commands_per_s"])],
        ["bridge / baseline (medians)", shown(s["ratio_to_baseline"], 2) + " (target ≥ 0.50)"],
        ["bridge / baseline (interleaved pairs)", shown(s["pair_ratio"], 2)],
        ["bridge CPU per command, µs", shown(s["bridge_cpu_us_per_command"])],
    ]
    if "bridge_syscalls_per_command" in s:  # results written before it was counted lack it
        calls = s["bridge_syscalls_per_command"]
        rows.append(
            ["bridge write() / read() calls per command", f"{shown(calls['writes'], 2)} / {shown(calls['reads'], 2)}"]
        )
    if "durable_baseline_commands_per_s" in s:  # results written before the durable baseline existed lack it
        rows += [
            ["durable baseline (uvloop), commands/s", shown(s["durable_baseline_commands_per_s"])],
            ["durable baseline CPU per command, µs", shown(s["durable_baseline_cpu_us_per_command"])],
            ["durable baseline, RabbitMQ (cores)", shown(s["durable_baseline_rabbitmq_cores"], 2)],
            ["durable baseline / baseline (pairs)", shown(s["durable_to_baseline_pairs"], 2)],
            ["bridge / durable baseline (pairs)", shown(s["durable_pair_ratio"], 2)],
        ]
    for who, d in s["cpu_share_at_saturation"].items():
        rows.append([f"CPU at saturation, {who} (cores)", shown(d, 2)])
    for name, d in s["latency"].items():
        rows.append(
            [
                f"latency at {name} ({d['rate']['median']:.0f}/s; other load "
                f"{d['cpu_share']['other']['median']:.2f} cores) p50 / p99 / max, ms",
                f"{shown(d['p50_ms'], 1)} / {shown(d['p99_ms'], 1)} / {shown(d['max_ms'], 1)}",
            ]
        )
    return render_table(["throughput (1,000 sessions)", "median [min–max]"], rows)


def main() -> None:
    """``python -m bench.throughput``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--commands", type=int, default=4000, help="commands per saturation repetition")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of each latency repetition")
    parser.add_argument("--result", default=NAME, help=f"results file name (default: {NAME})")
    args = parser.parse_args()
    run_and_report(
        args.result,
        lambda: run(sessions=args.sessions, commands=args.commands, reps=args.reps, seconds=args.seconds),
        render,
    )


if __name__ == "__main__":
    main()
