"""Scale-out failover: 3 replicas, N durable sessions, SIGKILL the largest owner, time the takeover.

Three ``genesys-bridge run`` replicas (real processes, one shared state key, ``BRIDGE_PARTITIONS`` = 16 by
default) share one simulator (``bench.sim_server``, its own rate limits off: the bridge keeps Genesys'
limits itself). Once the partitions are balanced, N sessions are opened through the command exchange
(one deployment). Each repetition then:

1. waits ``--settle-s`` (default 60 s), so the deployment's connect window (1,000 new connections per
   minute per deployment, Genesys' limit, §8) holds none of the opening's or the last takeover's connects;
2. SIGKILLs the replica whose partitions hold the most sessions (a crash: no drain, no hand-off);
3. runs the clock from the kill until every one of the dead replica's sessions has published
   ``session.resumed`` from a survivor (the events are followed on the event exchange). The survivors' logs
   give the moment each of its partitions was gained (``partition_gained``: probe, fence grace, journal
   replay, resumes started) and their ``genesys_bridge_failover_duration_seconds`` histogram the bridge's
   own measure (oldest probe waiting in the partition queue → every session of the partition resumed);
4. starts a replacement replica and waits until the partitions are balanced and resumed again.

What bounds it: a survivor learns it is the new owner from the next probe (``BRIDGE_PROBE_INTERVAL_S``,
default 2 s), waits ``BRIDGE_FENCE_GRACE_S`` (default 1 s), replays the partition's journal stream and
resumes each session at most ``BRIDGE_RESUME_RATE_PER_S`` (default 100/s per replica), within its share of
the connect window: 1,000/min per deployment divided by the replicas left (500/min each for 2). The dead
replica's ~N/3 sessions split over 2 survivors fit that window when it is empty; with less settling, the
window spent opening the sessions can bound the takeover.

Run: ``python -m bench.failover [--sessions 1000] [--reps 3] [--partitions 16] [--settle-s 60]
[--probe-interval-s S] [--balance-interval-s S]`` (the bridge's defaults unless given). Prints a table
(median [min–max] of the repetitions) and writes ``bench/results/failover.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import time
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from bench.common import AMQP_URL, run_and_report
from bench.loadgen import LoadGen
from bench.procs import raise_nofile_limit
from bench.replica_stack import Replica, ReplicaStack, log_time
from bench.stack import bridge_available
from bench.stats import Spread, metric_sum, render_table, spread
from bridge.config import Settings
from bridge.partition.layout import partition_of

__all__ = ["main", "run"]

NAME = "failover"
REPLICAS = 3
GENESYS_CONNECTIONS_PER_MIN = 1000  # per deployment (§8)
_FAILOVER = "genesys_bridge_failover_duration_seconds"


def _default(name: str) -> float:
    value = Settings.model_fields[name].default
    assert isinstance(value, int | float)
    return float(value)


class Resumes:
    """Follows ``session.resumed`` and ``session.ended`` on the event exchange: arrival time per session."""

    def __init__(self, event_exchange: str) -> None:
        self._exchange = event_exchange
        self._conn: aio_pika.abc.AbstractConnection | None = None
        self.resumed_at: dict[str, float] = {}
        self.ended: set[str] = set()
        self.changed = asyncio.Event()

    async def __aenter__(self) -> Resumes:
        self._conn = await aio_pika.connect(AMQP_URL, client_properties={"connection_name": "bench-failover-events"})
        channel = await self._conn.channel()
        events = await channel.declare_exchange(self._exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(events, routing_key="session.resumed.#")
        await queue.bind(events, routing_key="session.ended.#")
        await queue.consume(self._on_event, no_ack=True)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        data: dict[str, Any] = json.loads(message.body)
        sid = str(data.get("session_id"))
        if data.get("type") == "session.resumed":
            self.resumed_at[sid] = time.time()
        elif data.get("type") == "session.ended":
            self.ended.add(sid)
        self.changed.set()

    async def wait_all(self, ids: list[str], since: float, timeout_s: float) -> bool:
        """Wait until every one of ``ids`` resumed after ``since`` (epoch seconds); False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                while any(self.resumed_at.get(sid, 0.0) <= since for sid in ids):
                    self.changed.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await self.changed.wait()
        except TimeoutError:
            return False
        return True


def _window_note(moved: int, survivors: int, resume_rate: float) -> dict[str, Any]:
    """What the connect window and the resume pacing allow the survivors (stated beside the figure)."""
    share = GENESYS_CONNECTIONS_PER_MIN // max(1, survivors)
    per_survivor = math.ceil(moved / max(1, survivors))
    return {
        "survivors": survivors,
        "window_per_survivor_per_min": share,
        "moved_per_survivor": per_survivor,
        "fits_an_empty_window": per_survivor <= share,
        "resume_pacing_floor_s": round(per_survivor / resume_rate, 2),
    }


async def _histogram(stack: ReplicaStack, replicas: list[Replica]) -> tuple[float, float]:
    """(sum, count) of the failover histogram over ``replicas``."""
    total, count = 0.0, 0.0
    for r in replicas:
        text = await stack.metrics_text(r)
        total += metric_sum(text, _FAILOVER + "_sum")
        count += metric_sum(text, _FAILOVER + "_count")
    return total, count


async def one_failover(
    stack: ReplicaStack, resumes: Resumes, ids: list[str], *, settle_s: float, resume_rate: float
) -> dict[str, Any]:
    """Settle, SIGKILL the largest owner, wait until all its sessions are resumed elsewhere."""
    await asyncio.sleep(settle_s)
    await stack.wait(stack.settled, what="balanced and resumed before the kill", timeout_s=120)
    alive = stack.alive
    by_replica = {r.name: [sid for sid in ids if partition_of(sid, stack.partitions) in r.owned()] for r in alive}
    victim = max(alive, key=lambda r: len(by_replica[r.name]))
    victim_partitions = sorted(victim.owned())
    moved = by_replica[victim.name]
    survivors = [r for r in alive if r is not victim]
    hist0 = await _histogram(stack, survivors)
    ended0 = len(resumes.ended)
    t_kill = time.time()
    await stack.kill(victim)
    complete = await resumes.wait_all(moved, since=t_kill, timeout_s=120 + 2 * len(moved) / resume_rate)
    last_resumed = max((resumes.resumed_at.get(sid, math.nan) for sid in moved), default=math.nan)
    gained = [
        e
        for r in survivors
        for e in r.events("partition_gained")
        if log_time(e) > t_kill and int(e["partition"]) in victim_partitions
    ]
    recovered = [
        float(e["failover_s"])
        for r in survivors
        for e in r.events("partition_recovered")
        if log_time(e) > t_kill and int(e["partition"]) in victim_partitions and "failover_s" in e
    ]
    hist1 = await _histogram(stack, survivors)
    observed = hist1[1] - hist0[1]
    return {
        "victim": victim.name,
        "victim_partitions": victim_partitions,
        "sessions_per_replica": {k: len(v) for k, v in by_replica.items()},
        "dead_replica_sessions": len(moved),
        "all_resumed_s": round(last_resumed - t_kill, 2),
        "first_partition_gained_s": round(min((log_time(e) for e in gained), default=math.nan) - t_kill, 2),
        "last_partition_gained_s": round(max((log_time(e) for e in gained), default=math.nan) - t_kill, 2),
        "partitions_gained": len(gained),
        "max_load_s": max((float(e.get("load_s", math.nan)) for e in gained), default=math.nan),
        "failover_histogram_mean_s": round((hist1[0] - hist0[0]) / observed, 2) if observed else math.nan,
        "failover_histogram_count": int(observed),
        "max_partition_failover_s": round(max(recovered, default=math.nan), 2),
        "sessions_ended": len(resumes.ended) - ended0,
        "window": _window_note(len(moved), len(survivors), resume_rate),
        "complete": complete,
    }


async def run(
    *,
    sessions: int,
    reps: int,
    partitions: int,
    settle_s: float,
    probe_interval_s: float | None,
    balance_interval_s: float | None,
) -> dict[str, Any]:
    """The whole benchmark; returns the results document."""
    missing = bridge_available()
    if missing is not None:
        return {"status": "not available yet", "reason": missing}
    raise_nofile_limit()
    extra: dict[str, str] = {}
    if probe_interval_s is not None:
        extra["BRIDGE_PROBE_INTERVAL_S"] = str(probe_interval_s)
    if balance_interval_s is not None:
        extra["BRIDGE_BALANCE_INTERVAL_S"] = str(balance_interval_s)
    intervals = {
        "probe_interval_s": probe_interval_s or _default("probe_interval_s"),
        "probe_interval_default": probe_interval_s is None,
        "balance_interval_s": balance_interval_s or _default("balance_interval_s"),
        "balance_interval_default": balance_interval_s is None,
        "fence_grace_s": _default("fence_grace_s"),
        "resume_rate_per_s": _default("resume_rate_per_s"),
    }
    options = {"sessions": sessions, "reps": reps, "partitions": partitions, "replicas": REPLICAS, "settle_s": settle_s}
    rows: list[dict[str, Any]] = []
    async with (
        ReplicaStack(NAME, partitions=partitions, max_sessions=sessions, extra_env=extra) as stack,
        LoadGen.of(stack.names) as lg,
        Resumes(stack.names.event_exchange) as resumes,
    ):
        await asyncio.gather(*(stack.add(f"r{i}") for i in range(REPLICAS)))
        await stack.wait(stack.balanced, what="the first balance", timeout_s=120)
        ids = [f"{stack.prefix}.s{i}" for i in range(sessions)]
        open_s = await lg.start_sessions(ids, timeout_s=300)
        print(f"  opened {sessions:,} sessions on {REPLICAS} replicas in {open_s:.1f} s", flush=True)
        for rep in range(reps):
            row = await one_failover(
                stack, resumes, ids, settle_s=settle_s, resume_rate=float(intervals["resume_rate_per_s"])
            )
            print(f"  rep {rep + 1}: {row}", flush=True)
            rows.append(row)
            if rep < reps - 1:
                await stack.wait(stack.settled, what="the survivors settled", timeout_s=120)
                await stack.add(f"r{REPLICAS + rep}")
                await stack.wait(stack.settled, what="the replacement's share", timeout_s=180)
        dead_letters = await _messages(stack.names.dead_letter_queue)
    doc = _document(options, intervals, open_s, rows)
    doc["summary"]["dead_lettered"] = dead_letters
    return doc


async def _messages(queue: str) -> int | None:
    """Messages waiting in ``queue`` (None when it does not exist)."""
    conn = await aio_pika.connect(AMQP_URL, client_properties={"connection_name": "bench-failover-count"})
    async with conn:
        channel = await conn.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return None
        return int(declared.declaration_result.message_count or 0)


def _document(
    options: dict[str, Any], intervals: dict[str, Any], open_s: float, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    def sp(key: str) -> dict[str, float | int]:
        return spread(r[key] for r in rows).as_json()

    return {
        "status": "ok",
        "options": options,
        "intervals": intervals,
        "genesys_limits": f"{GENESYS_CONNECTIONS_PER_MIN:,} new WebSocket connections per deployment per minute",
        "summary": {
            "open_s": round(open_s, 1),
            "dead_replica_sessions": sp("dead_replica_sessions"),
            "all_resumed_s": sp("all_resumed_s"),
            "first_partition_gained_s": sp("first_partition_gained_s"),
            "last_partition_gained_s": sp("last_partition_gained_s"),
            "failover_histogram_mean_s": sp("failover_histogram_mean_s"),
            "max_partition_failover_s": sp("max_partition_failover_s"),
            "sessions_ended": sum(r["sessions_ended"] for r in rows),
            "complete": all(r["complete"] for r in rows),
        },
        "reps": rows,
    }


def render(doc: dict[str, Any]) -> str:
    """The printed table."""
    if doc["status"] != "ok":
        return f"failover: {doc['status']}: {doc['reason']}"

    def sp(d: dict[str, Any], digits: int = 1) -> str:
        return Spread.of(d).fmt(digits)

    s, iv, o = doc["summary"], doc["intervals"], doc["options"]
    w = doc["reps"][0]["window"]

    def said(key: str) -> str:
        return "default" if iv[f"{key}_default"] else "flag"

    rows = [
        ["dead replica's sessions", sp(s["dead_replica_sessions"], 0)],
        ["kill → every one of them resumed by the survivors, s", sp(s["all_resumed_s"])],
        [
            "kill → first / last of its partitions gained, s",
            f"{sp(s['first_partition_gained_s'])} / {sp(s['last_partition_gained_s'])}",
        ],
        [
            "failover_duration histogram (survivors), mean / slowest partition, s",
            f"{sp(s['failover_histogram_mean_s'])} / {sp(s['max_partition_failover_s'])}",
        ],
        [
            "sessions ended during the failovers / commands dead-lettered",
            f"{s['sessions_ended']} / {s.get('dead_lettered')}",
        ],
        [
            "intervals",
            f"probe {iv['probe_interval_s']:g} s ({said('probe_interval')}), balance {iv['balance_interval_s']:g} s "
            f"({said('balance_interval')}), fence grace {iv['fence_grace_s']:g} s, resumes ≤ "
            f"{iv['resume_rate_per_s']:g}/s per replica",
        ],
        [
            "connect window",
            f"{doc['genesys_limits']}; {w['survivors']} survivors get {w['window_per_survivor_per_min']}/min each "
            f"for ~{w['moved_per_survivor']} sessions each (fits an empty window: {w['fits_an_empty_window']}; "
            f"settled {o['settle_s']:g} s before each kill)",
        ],
    ]
    title = (
        f"failover ({o['sessions']:,} sessions, {o['replicas']} replicas, P={o['partitions']}, SIGKILL, "
        f"{len(doc['reps'])} reps)"
    )
    return render_table([title, "median [min–max]"], rows)


def main() -> None:
    """``python -m bench.failover``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--settle-s", type=float, default=60.0, help="wait before each kill (empties the window)")
    parser.add_argument(
        "--probe-interval-s", type=float, default=None, help="BRIDGE_PROBE_INTERVAL_S (default: the bridge's)"
    )
    parser.add_argument("--balance-interval-s", type=float, default=None, help="BRIDGE_BALANCE_INTERVAL_S")
    args = parser.parse_args()
    run_and_report(
        NAME,
        lambda: run(
            sessions=args.sessions,
            reps=args.reps,
            partitions=args.partitions,
            settle_s=args.settle_s,
            probe_interval_s=args.probe_interval_s,
            balance_interval_s=args.balance_interval_s,
        ),
        render,
    )


if __name__ == "__main__":
    main()
