"""Where a ``message.send``'s latency goes at a steady load: in the session, in its outcome's confirm, and around.

Not in the suite. ``python -m bench.latency_split [--rate 76] [--reps 3] [--seconds 6]`` opens the
benchmark stack (simulator + daemon, 1,000 sessions), publishes ``message.send`` at ``--rate`` per second
for ``--seconds``, as ``bench/throughput.py``'s latency repetitions do, and reads the daemon's own
histograms before and after each repetition. Per repetition it prints the mean, p50 and p99 from publish
to the outcome's arrival (the load generator's clock), and beside the mean:

- **in the session**: ``genesys_bridge_command_duration_seconds`` (``message.send``), from the partition's
  consumer handing the command over to the outcome kept and saved, so the session's inbox, both journal
  records and the round trip to Genesys (here the simulator); and within it
  - **journal**: two records (the send, then its outcome), each ``genesys_bridge_journal_write_seconds``;
  - **Genesys**: ``genesys_bridge_genesys_echo_seconds``, the send written to its echo;
  - **session's own**: the rest of the session's share (its inbox and loop, the bookkeeping between);
- **the outcome's confirm**: ``genesys_bridge_publish_confirm_seconds``, publish to the broker's confirm;
- **around**: the rest of the mean: the command's way in (the intake queue, the router's copy into the
  partition queue, the partition's consumer) and the outcome's way out to the load generator.

A histogram's sum and count give an exact mean, not quantiles: the split is of means.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics

from bench.loadgen import LoadGen, message_send
from bench.procs import raise_nofile_limit
from bench.stack import Stack
from bench.stats import percentile

NAME = "latency_split"
SESSIONS = 1000
IN_SESSION = ("genesys_bridge_command_duration_seconds", 'type="message.send"')
JOURNAL = ("genesys_bridge_journal_write_seconds", "")
GENESYS = ("genesys_bridge_genesys_echo_seconds", "")
CONFIRM = ("genesys_bridge_publish_confirm_seconds", "")


def histogram_totals(metrics: str, name: str, labels: str) -> tuple[float, float]:
    """The ``_sum`` and ``_count`` of histogram ``name`` on a /metrics page, over its series whose labels
    contain ``labels`` (all series when empty)."""
    total = count = 0.0
    pattern = rf"^{name}_(sum|count)(?:\{{([^}}]*)\}})? (\S+)$"
    for kind, series, value in re.findall(pattern, metrics, re.MULTILINE):
        if labels and labels not in series:
            continue
        if kind == "sum":
            total += float(value)
        else:
            count += float(value)
    return total, count


def mean_between(before: str, after: str, name: str, labels: str) -> float:
    """The mean of what histogram ``name`` observed between two /metrics pages, in seconds (NaN if nothing)."""
    (sum0, count0), (sum1, count1) = histogram_totals(before, name, labels), histogram_totals(after, name, labels)
    return (sum1 - sum0) / (count1 - count0) if count1 > count0 else float("nan")


async def run(rate: float, reps: int, seconds: float) -> None:
    raise_nofile_limit()
    async with Stack(NAME, max_sessions=SESSIONS) as stack, LoadGen.of(stack.names) as lg:
        ids = [f"{stack.prefix}.s{i}" for i in range(SESSIONS)]
        await lg.start_sessions(ids, timeout_s=120)
        await lg.follow("command.outcome.#")
        print(
            "rep  mean ms  p50 ms  p99 ms | in the session (journal ×2, Genesys, own) | outcome confirm | around"
            " (means, ms)",
            flush=True,
        )
        for rep in range(1, reps + 1):
            before = await stack.metrics_text()
            tally = lg.new_tally()
            sent = await lg.publish_paced(lambda i: message_send(ids[i % len(ids)]), rate, seconds)
            await lg.wait_arrived(sent, timeout_s=30)
            after = await stack.metrics_text()
            latencies = tally.latencies
            mean = statistics.mean(latencies)
            in_session, journal, genesys, confirm = (
                mean_between(before, after, *histogram) for histogram in (IN_SESSION, JOURNAL, GENESYS, CONFIRM)
            )
            own = in_session - 2 * journal - genesys
            around = mean - in_session - confirm
            print(
                f"{rep:3}  {mean * 1e3:7.2f}  {percentile(latencies, 50) * 1e3:6.2f}  "
                f"{percentile(latencies, 99) * 1e3:6.2f} | {in_session * 1e3:5.2f} ({2 * journal * 1e3:.2f}, "
                f"{genesys * 1e3:.2f}, {own * 1e3:.2f}) | {confirm * 1e3:5.2f} | {around * 1e3:5.2f}",
                flush=True,
            )


def main() -> None:
    """``python -m bench.latency_split``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=76.0, help="commands per second")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of each repetition")
    args = parser.parse_args()
    asyncio.run(run(args.rate, args.reps, args.seconds))


if __name__ == "__main__":
    main()
