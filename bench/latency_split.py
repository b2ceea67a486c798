"""Where a ``message.send``'s latency goes at a steady load: in the session, and outside it.

Not in the suite. ``python -m bench.latency_split [--rate 76] [--reps 3] [--seconds 6] [--result NAME]``
opens the benchmark stack (simulator + daemon, 1,000 sessions) and runs ``bench/throughput.py``'s latency
repetition at ``--rate`` commands/s, reading the daemon's own histograms before and after each. Per
repetition it gives the mean, p50 and p99 from publish to the outcome's arrival (the load generator's
clock), and splits the mean:

- **in the session**: ``genesys_bridge_command_duration_seconds`` (``message.send``), from the partition's
  consumer handing the command over to the outcome kept and saved; within it
  - **journal**: two records (the send, then its outcome), each ``genesys_bridge_journal_write_seconds``;
  - **Genesys**: ``genesys_bridge_genesys_echo_seconds``, the send written to its echo (here the simulator);
  - **the session's own**: the rest (its inbox and loop, the bookkeeping between);
- **outside the session**: the rest of the mean, the command's way in (the intake queue, the router's copy
  into the partition queue, the partition's consumer) and the outcome's way out to the load generator.

Beside them, not part of the sum: **the outcome's confirm** (``genesys_bridge_publish_confirm_seconds``),
which overlaps the outcome's way out (the broker delivers the event and confirms it at about the same
time). A histogram's sum and count give an exact mean, not quantiles: the split is of means. Writes
``bench/results/latency_split.json`` (``--result NAME``: ``NAME.json``).
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import run_and_report
from bench.loadgen import LoadGen
from bench.procs import raise_nofile_limit
from bench.stack import Stack, bridge_available
from bench.stats import metric_sum, render_table, shown, spread
from bench.throughput import paced_rep

__all__ = ["main", "mean_between", "run"]

NAME = "latency_split"
SESSIONS = 1000
#: Each part of the split: the histogram and the labels its series must carry ("" for all).
HISTOGRAMS = {
    "in_session_ms": ("genesys_bridge_command_duration_seconds", 'type="message.send"'),
    "journal_record_ms": ("genesys_bridge_journal_write_seconds", ""),
    "genesys_ms": ("genesys_bridge_genesys_echo_seconds", ""),
    "outcome_confirm_ms": ("genesys_bridge_publish_confirm_seconds", ""),
}
ROWS = {
    "mean_ms": "publish → outcome arrival, mean",
    "p50_ms": "publish → outcome arrival, p50",
    "p99_ms": "publish → outcome arrival, p99",
    "in_session_ms": "in the session",
    "journal_ms": "  journal: two records",
    "genesys_ms": "  Genesys round trip",
    "session_own_ms": "  the session's own",
    "outside_ms": "outside the session: the way in and out",
    "outcome_confirm_ms": "(the outcome's confirm, overlapping the way out)",
}


def mean_between(before: str, after: str, name: str, labels: str) -> float:
    """The mean of what histogram ``name`` observed between two /metrics pages, in seconds (NaN if nothing)."""
    total = metric_sum(after, f"{name}_sum", labels) - metric_sum(before, f"{name}_sum", labels)
    count = metric_sum(after, f"{name}_count", labels) - metric_sum(before, f"{name}_count", labels)
    return total / count if count > 0 else float("nan")


async def run(*, rate: float, reps: int, seconds: float) -> dict[str, Any]:
    """The split; returns the results document (without machine/run id). A repetition whose outcomes did
    not all arrive is reported and left out of the summary."""
    missing = bridge_available()
    if missing is not None:
        return {"status": "not available yet", "reason": missing}
    raise_nofile_limit()
    repetitions: list[dict[str, Any]] = []
    async with Stack(NAME, max_sessions=SESSIONS) as stack, LoadGen.of(stack.names) as lg:
        ids = [f"{stack.prefix}.s{i}" for i in range(SESSIONS)]
        await lg.start_sessions(ids, timeout_s=120)
        await lg.follow("command.outcome.#")
        for rep in range(1, reps + 1):
            before = await stack.metrics_text()
            result = await paced_rep(stack, lg, ids, rate, seconds)
            after = await stack.metrics_text()
            means = {key: mean_between(before, after, *histogram) * 1000 for key, histogram in HISTOGRAMS.items()}
            split = {
                **{key: result[key] for key in ("mean_ms", "p50_ms", "p99_ms", "complete", "missing", "failures")},
                "in_session_ms": means["in_session_ms"],
                "journal_ms": 2 * means["journal_record_ms"],
                "genesys_ms": means["genesys_ms"],
                "session_own_ms": means["in_session_ms"] - 2 * means["journal_record_ms"] - means["genesys_ms"],
                "outside_ms": result["mean_ms"] - means["in_session_ms"],
                "outcome_confirm_ms": means["outcome_confirm_ms"],
            }
            repetitions.append({key: round(v, 2) if isinstance(v, float) else v for key, v in split.items()})
            print(f"  rep {rep}: " + ", ".join(f"{key} {repetitions[-1][key]}" for key in ROWS), flush=True)
            if not result["complete"]:
                print(f"  rep {rep}: {result['missing']} outcomes did not arrive; left out of the summary", flush=True)
    complete = [r for r in repetitions if r["complete"]]
    if not complete:
        return {"status": "failed", "reason": "no repetition got all its outcomes", "repetitions": repetitions}
    return {
        "status": "ok",
        "rate": rate,
        "sessions": SESSIONS,
        "seconds": seconds,
        "repetitions": repetitions,
        "summary": {key: spread(r[key] for r in complete).as_json() for key in ROWS},
    }


def render(doc: dict[str, Any]) -> str:
    """The printed table."""
    if doc["status"] != "ok":
        return f"latency_split: {doc['status']}: {doc['reason']}"
    rows = [[label, shown(doc["summary"][key], 2)] for key, label in ROWS.items()]
    return render_table([f"message.send at {doc['rate']:g}/s, ms", "median [min–max] of repetitions"], rows)


def main() -> None:
    """``python -m bench.latency_split``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=76.0, help="commands per second")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of each repetition")
    parser.add_argument("--result", default=NAME, help=f"results file name (default: {NAME})")
    args = parser.parse_args()
    run_and_report(args.result, lambda: run(rate=args.rate, reps=args.reps, seconds=args.seconds), render)


if __name__ == "__main__":
    main()
