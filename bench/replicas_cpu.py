"""CPU per command with 1, 2 and 3 replicas: what scaling out costs the machine, per command.

For each K in ``--replicas`` (default 1 2 3): a fresh stack of K ``genesys-bridge run`` replicas
(``BRIDGE_PARTITIONS`` = 16) and one simulator (``bench.sim_server``), the partitions balanced, S sessions
opened (one deployment), then ``--reps`` repetitions of the same fixed open-loop load: ``--rate``
``message.send`` commands/s for ``--seconds``, round-robin over the sessions (below the bridge's per-session
send budget of 2 msg/s), each followed to its ``command.outcome``. Over each repetition (first publish to
last outcome) ``/proc`` gives the CPU seconds of every replica, of RabbitMQ (``beam.smp``), of the simulator
and of the load generator; each divided by the commands is µs per command. The same processes' CPU with the
sessions open and no command (probes, balance, keepalives; measured once per K before the repetitions) is
also subtracted, pro rata, for the "minus idle" figures: the fixed cost of K replicas vs the cost per command.

Every command crosses the router (on one replica: ``genesys_bridge_router_active``) and then the owner of
its session's partition, so with K > 1 most commands touch two processes and the broker twice. The
replicas, the broker, the simulator and the load generator all share this machine's cores, so the figures
are CPU cost, not capacity: K replicas on one machine cannot run faster than its cores.

Run: ``python -m bench.replicas_cpu [--replicas 1 2 3] [--sessions 300] [--rate 200] [--seconds 15]
[--reps 3]``. Writes ``bench/results/replicas_cpu.json``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench.common import run_and_report
from bench.loadgen import LoadGen, message_send
from bench.procs import CpuSample, raise_nofile_limit
from bench.replica_stack import ReplicaStack
from bench.stack import bridge_available
from bench.stats import Spread, metric_sum, render_table, spread

__all__ = ["main", "run"]

NAME = "replicas_cpu"
PARTITIONS = 16


async def idle_rates(stack: ReplicaStack, seconds: float) -> dict[str, float]:
    """CPU seconds per wall second of each process with the sessions open and no command (probes, balance,
    keepalives): subtracted from a repetition to give the CPU the commands themselves cost."""
    pids = stack.pids
    cpu0 = CpuSample.take(pids)
    await asyncio.sleep(seconds)
    cpu1 = CpuSample.take(pids)
    wall = cpu1.at - cpu0.at
    return {name: (cpu1.seconds[name] - cpu0.seconds[name]) / wall for name in pids}


async def one_load(
    stack: ReplicaStack, lg: LoadGen, ids: list[str], rate: float, seconds: float, idle: dict[str, float]
) -> dict[str, Any]:
    """One repetition of the fixed load; CPU µs per command by process."""
    routers = [r.name for r in stack.alive if metric_sum(await stack.metrics_text(r), "genesys_bridge_router_active")]
    pids = stack.pids
    tally = lg.new_tally()
    cpu0 = CpuSample.take(pids)
    sent = await lg.publish_paced(lambda i: message_send(ids[i % len(ids)]), rate, seconds)
    complete = await lg.wait_arrived(sent, timeout_s=60)
    cpu1 = CpuSample.take(pids)
    wall = cpu1.at - cpu0.at
    used = {name: cpu1.seconds[name] - cpu0.seconds[name] for name in pids}
    replicas = [r.name for r in stack.alive]
    bridge_s = sum(used[name] for name in replicas)
    net = {name: used[name] - idle[name] * wall for name in pids}
    return {
        "sent": sent,
        "delivered": len(tally.latencies),
        "failures": dict(tally.failures),
        "complete": complete,
        "seconds": round(wall, 2),
        "router": routers,
        "per_replica_us_per_command": {name: round(used[name] / sent * 1e6, 1) for name in replicas},
        "bridge_us_per_command": round(bridge_s / sent * 1e6, 1),
        "broker_us_per_command": round(used["rabbitmq"] / sent * 1e6, 1),
        "bridge_net_us_per_command": round(sum(net[name] for name in replicas) / sent * 1e6, 1),
        "broker_net_us_per_command": round(net["rabbitmq"] / sent * 1e6, 1),
        "simulator_us_per_command": round(used["simulator"] / sent * 1e6, 1),
        "loadgen_us_per_command": round(used["loadgen"] / sent * 1e6, 1),
        "machine_busy_cores": round((cpu1.machine - cpu0.machine) / wall, 2),
    }


async def one_k(k: int, *, sessions: int, rate: float, seconds: float, reps: int) -> dict[str, Any]:
    """A fresh stack of ``k`` replicas; ``reps`` repetitions of the load."""
    rows: list[dict[str, Any]] = []
    async with (
        ReplicaStack(f"{NAME}-k{k}", partitions=PARTITIONS, max_sessions=sessions) as stack,
        LoadGen.of(stack.names) as lg,
    ):
        await asyncio.gather(*(stack.add(f"r{i}") for i in range(k)))
        await stack.wait(stack.balanced, what="the first balance", timeout_s=120)
        ids = [f"{stack.prefix}.s{i}" for i in range(sessions)]
        await lg.start_sessions(ids, timeout_s=180)
        await stack.wait(stack.settled, what="sessions settled", timeout_s=60)
        owned = {r.name: len(r.owned()) for r in stack.alive}
        idle = await idle_rates(stack, min(seconds, 10.0))
        await lg.follow("command.outcome.#")
        for rep in range(reps):
            row = await one_load(stack, lg, ids, rate, seconds, idle)
            row["partitions_owned"] = owned
            print(f"  K={k} rep {rep + 1}: {row}", flush=True)
            rows.append(row)
    return {
        "replicas": k,
        "bridge_us_per_command": spread(r["bridge_us_per_command"] for r in rows).as_json(),
        "broker_us_per_command": spread(r["broker_us_per_command"] for r in rows).as_json(),
        "bridge_net_us_per_command": spread(r["bridge_net_us_per_command"] for r in rows).as_json(),
        "broker_net_us_per_command": spread(r["broker_net_us_per_command"] for r in rows).as_json(),
        "idle_cores": {name: round(v, 3) for name, v in idle.items()},
        "simulator_us_per_command": spread(r["simulator_us_per_command"] for r in rows).as_json(),
        "per_replica_us_per_command": {
            name: spread(r["per_replica_us_per_command"][name] for r in rows).as_json()
            for name in rows[0]["per_replica_us_per_command"]
        },
        "router": rows[0]["router"],
        "partitions_owned": rows[0]["partitions_owned"],
        "machine_busy_cores": spread(r["machine_busy_cores"] for r in rows).as_json(),
        "complete": all(r["complete"] and not r["failures"] for r in rows),
        "reps": rows,
    }


async def run(*, replicas: list[int], sessions: int, rate: float, seconds: float, reps: int) -> dict[str, Any]:
    """The whole benchmark; returns the results document."""
    missing = bridge_available()
    if missing is not None:
        return {"status": "not available yet", "reason": missing}
    raise_nofile_limit()
    by_k = [await one_k(k, sessions=sessions, rate=rate, seconds=seconds, reps=reps) for k in replicas]
    return {
        "status": "ok",
        "options": {
            "replicas": replicas,
            "sessions": sessions,
            "rate": rate,
            "seconds": seconds,
            "reps": reps,
            "partitions": PARTITIONS,
        },
        "by_replicas": by_k,
    }


def render(doc: dict[str, Any]) -> str:
    """The printed table."""
    if doc["status"] != "ok":
        return f"replicas_cpu: {doc['status']}: {doc['reason']}"

    def sp(d: dict[str, Any]) -> str:
        return Spread.of(d).fmt(0)

    rows = []
    for k in doc["by_replicas"]:
        per = ", ".join(
            f"{name}{' (router)' if name in k['router'] else ''} {k['partitions_owned'].get(name, 0)}p: {sp(v)}"
            for name, v in k["per_replica_us_per_command"].items()
        )
        rows.append(
            [
                str(k["replicas"]),
                sp(k["bridge_us_per_command"]),
                sp(k["bridge_net_us_per_command"]),
                per,
                sp(k["broker_us_per_command"]),
                sp(k["broker_net_us_per_command"]),
                sp(k["simulator_us_per_command"]),
                f"{k['machine_busy_cores']['median']:.2f}",
            ]
        )
    o = doc["options"]
    return render_table(
        [
            "K",
            "all replicas, µs/cmd",
            "all replicas minus idle, µs/cmd",
            "per replica (partitions), µs/cmd",
            "RabbitMQ, µs/cmd",
            "RabbitMQ minus idle, µs/cmd",
            "simulator, µs/cmd",
            "machine busy, cores",
        ],
        rows,
    ) + (
        f"\n{o['rate']:g} message.send/s for {o['seconds']:g} s over {o['sessions']} sessions, P={o['partitions']}, "
        f"{o['reps']} reps per K; median [min–max]. 'minus idle': less each process's CPU with the sessions open and "
        "no command (probes, balance, keepalives), measured just before. Every process shares the machine's cores."
    )


def main() -> None:
    """``python -m bench.replicas_cpu``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--rate", type=float, default=200.0, help="message.send commands per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each repetition")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    run_and_report(
        NAME,
        lambda: run(
            replicas=args.replicas, sessions=args.sessions, rate=args.rate, seconds=args.seconds, reps=args.reps
        ),
        render,
    )


if __name__ == "__main__":
    main()
