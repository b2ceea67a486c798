"""Micro-benchmark, not in the suite: the cyclic collector's cost with the default thresholds vs the daemon's
tuning (``gc.freeze()`` after start-up plus :data:`bridge.app.GC_THRESHOLDS`), in one process.

A long-lived heap stands in for N open sessions (nested dicts, lists and small objects, ~70 tracked
containers per session). Two workloads run on top of it: "commands", a hot loop of per-command work that
allocates and drops containers (a validated ``command.outcome`` and its JSON, a dict and a list, an
occasional cycle), and "opening", N/2 more sessions built and kept (the heap grows, as when sessions open),
then dropped. The two settings
alternate, repetition by repetition. Prints µs per iteration, the collections per generation and the time
spent in the collector (``gc.callbacks``), median [min–max].

    python -m bench.micro_gc [--sessions 10000] [--n 200000] [--reps 3]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import time
from datetime import UTC, datetime
from typing import Any

from bench.stats import spread
from bridge.app import GC_THRESHOLDS
from bridge.contract.outcomes import SettledOutcome, event_stamp
from genesys_bridge_client.contract.codec import encode_event
from genesys_bridge_client.contract.commands import MessageSend

NOW = datetime(2026, 11, 26, 13, 41, 2, tzinfo=UTC)
COMMAND = MessageSend(session_id="order-4711", command_id="cmd-1", text="hello")
OUTCOME = SettledOutcome.of(COMMAND, "delivered", "ok", genesys_message_id="m-1")


class _Node:
    def __init__(self, i: int) -> None:
        self.i = i
        self.peer: Any = None


def _session(i: int) -> dict[str, Any]:
    nodes = [_Node(j) for j in range(30)]
    for a, b in itertools.pairwise(nodes):
        a.peer = b  # long-lived references, as between a session's actor, core and link
    return {"id": f"s{i}", "nodes": nodes, "seen": [[str(j)] for j in range(30)], "meta": {"k": {"v": [i]}}}


class _Pauses:
    def __init__(self) -> None:
        self.started = 0.0
        self.total = 0.0
        self.counts = [0, 0, 0]

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.total += time.perf_counter() - self.started
            self.counts[info["generation"]] += 1


def _work(n: int) -> None:
    for i in range(n):
        stamp = event_stamp(session_id="order-4711", seq=i, occurred_at=NOW, cause=COMMAND)
        encode_event(OUTCOME.event(stamp))
        scratch = {"frame": [i, {"a": i}], "log": {"event": "x", "n": i}}
        if i % 100 == 0:
            cycle: list[Any] = [scratch]
            cycle.append(cycle)  # an occasional cycle, for the collector to find


def _open(n: int) -> None:
    opened = [_session(i) for i in range(n)]
    del opened


def _run(tuned: bool, n: int, opening: bool) -> tuple[float, _Pauses]:
    gc.collect()
    if tuned:
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
    pauses = _Pauses()
    gc.callbacks.append(pauses)
    try:
        start = time.process_time()
        _open(n) if opening else _work(n)
        elapsed = time.process_time() - start
    finally:
        gc.callbacks.remove(pauses)
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)
    return elapsed / n * 1e6, pauses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    heap = [_session(i) for i in range(args.sessions)]
    print(f"long-lived heap: {args.sessions} sessions, {len(gc.get_objects())} tracked objects")
    for workload, n in (("commands", args.n), ("opening", args.sessions // 2)):
        results: dict[bool, list[tuple[float, _Pauses]]] = {False: [], True: []}
        for _ in range(args.reps):
            for tuned in (False, True):
                results[tuned].append(_run(tuned, n, workload == "opening"))
        unit = "command" if workload == "commands" else "session"
        for tuned, runs in results.items():
            label = f"freeze + {GC_THRESHOLDS}" if tuned else "default (700, 10, 10)"
            per_iter = spread(r[0] for r in runs)
            in_gc = spread(r[1].total / n * 1e6 for r in runs)
            counts = runs[0][1].counts
            print(
                f"{workload:8} {label:26} CPU {per_iter.fmt(2)} µs/{unit}, in the collector {in_gc.fmt(2)} µs; "
                f"collections gen0/1/2 {counts[0]}/{counts[1]}/{counts[2]}"
            )
    del heap


if __name__ == "__main__":
    main()
