"""Where the bridge's memory per session goes: ``python -m bench.memprofile [--sessions N]``.

Not part of ``python -m bench``. It runs the bridge *in this process* (``bridge.app.running_bridge``, the
same composition the daemon runs) with ``tracemalloc`` on, the simulator in its own process, opens N
sessions, and compares two snapshots (before the sessions, after them): the allocation growth per
session, grouped by package and by source line. With ``--busy M`` each session first gets M
``message.send`` (at 1.8/s per session, under the bridge's budget of 2/s), so its record carries the
history of a session some way into its conversation (M ≥ 200: the full tails of recent ids and outcomes);
the results then go to ``memprofile-busy.json`` (``--result`` names another file). The RSS of a real daemon
is the figure that counts (``bench/capacity.py``); this says what that RSS is made of. tracemalloc sees
Python allocations only (not the allocator's fragmentation or free lists), so its total is below the RSS
delta.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tracemalloc
from collections import Counter
from typing import Any

from bench.common import write_result
from bench.loadgen import LoadGen
from bench.procs import raise_nofile_limit, rss_bytes
from bench.profile import short_path
from bench.stack import Stack
from bench.stats import render_table

__all__ = ["group_of", "main"]

_GROUPS: tuple[tuple[str, str], ...] = (
    ("websockets/", "websockets"),
    ("asyncio/", "asyncio (tasks, futures, transports)"),
    ("aio_pika/", "AMQP client"),
    ("aiormq/", "AMQP client"),
    ("pamqp/", "AMQP client"),
    ("pydantic", "pydantic"),
    ("structlog/", "structlog"),
    ("bridge/session/", "bridge/session"),
    ("bridge/genesys/", "bridge/genesys"),
    ("bridge/store/", "bridge/store"),
    ("bridge/amqp/", "bridge/amqp"),
    ("bridge/", "bridge (other)"),
    ("ssl.py", "ssl"),
)


def _tasks_by_coroutine() -> Counter[str]:
    """Live tasks by the qualified name of their coroutine (the long-lived ones are what a session holds)."""
    return Counter(getattr(t.get_coro(), "__qualname__", "?") for t in asyncio.all_tasks())


def _objects_by_type() -> Counter[str]:
    """Objects the cyclic collector tracks, by type: what a session is made of, in counts rather than bytes."""
    gc.collect()
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def group_of(filename: str) -> str:
    """The package group of a source file (see ``_GROUPS``)."""
    for needle, group in _GROUPS:
        if needle in filename:
            return group
    return "other: " + filename.rsplit("/", 2)[-1]


async def _measure(sessions: int, busy: int) -> dict[str, Any]:
    from bridge.app import running_bridge
    from bridge.config import Settings
    from bridge.observability.logging import configure_logging

    configure_logging(level="WARNING", fmt="json")  # the daemon's own logs would drown the table

    raise_nofile_limit()
    async with Stack("memprofile", max_sessions=sessions) as stack:
        # The stack's own daemon is not needed: stop it and run the same settings in this process.
        await stack.kill_bridge()
        env = stack.bridge_env()
        settings = Settings.load(
            **{k.removeprefix("BRIDGE_").lower(): v for k, v in env.items() if k.startswith("BRIDGE_")}
        )
        tracemalloc.start(8)
        async with (
            running_bridge(settings),
            LoadGen.of(stack.names) as lg,
        ):
            await asyncio.sleep(1)
            # Counted first: the count collects garbage, which must not be freed between the two snapshots.
            tasks0, objects0 = _tasks_by_coroutine(), _objects_by_type()
            before = tracemalloc.take_snapshot()
            rss0 = rss_bytes(os.getpid())
            ids = [f"{stack.prefix}.s{i}" for i in range(sessions)]
            await lg.start_sessions(ids, timeout_s=60 + sessions / 10)
            if busy:
                await lg.follow("command.outcome.#")
                await lg.make_busy(ids, busy, timeout_s=120)
            await asyncio.sleep(3)
            tasks, objects = _tasks_by_coroutine() - tasks0, _objects_by_type() - objects0
            after = tracemalloc.take_snapshot()
            rss1 = rss_bytes(os.getpid())
        tracemalloc.stop()
    diff = after.compare_to(before, "filename")
    groups: Counter[str] = Counter()
    for stat in diff:
        groups[group_of(stat.traceback[0].filename)] += stat.size_diff
    lines = after.compare_to(before, "lineno")[:25]
    total = sum(groups.values())
    return {
        "sessions": sessions,
        "busy_sends_per_session": busy,
        "rss_delta_kib_per_session": round((rss1 - rss0) / sessions / 1024, 2),
        "traced_kib_per_session": round(total / sessions / 1024, 2),
        "by_group_kib_per_session": {
            g: round(v / sessions / 1024, 2) for g, v in groups.most_common() if abs(v) >= sessions * 64
        },
        "tasks_per_session": {k: round(v / sessions, 2) for k, v in tasks.most_common() if v >= sessions / 10},
        "objects_per_session": {k: round(v / sessions, 2) for k, v in objects.most_common(25)},
        "top_lines_kib_per_session": [
            (
                f"{short_path(s.traceback[0].filename)}:{s.traceback[0].lineno}",
                round(s.size_diff / sessions / 1024, 2),
            )
            for s in lines
        ],
    }


def main() -> None:
    """``python -m bench.memprofile``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--busy", type=int, default=0, help="message.send per session before the snapshot")
    parser.add_argument("--result", help="results file name (default: memprofile, or memprofile-busy with --busy)")
    args = parser.parse_args()
    doc = asyncio.run(_measure(args.sessions, args.busy))
    print(
        f"{doc['sessions']} sessions: RSS +{doc['rss_delta_kib_per_session']} KiB/session "
        f"(tracemalloc on), traced +{doc['traced_kib_per_session']} KiB/session"
    )
    print(render_table(["group", "KiB/session"], list(doc["by_group_kib_per_session"].items())))
    print()
    print(render_table(["line", "KiB/session"], doc["top_lines_kib_per_session"]))
    print()
    print(render_table(["task (coroutine)", "per session"], list(doc["tasks_per_session"].items())))
    print()
    print(render_table(["tracked object type", "per session"], list(doc["objects_per_session"].items())))
    result = args.result or ("memprofile-busy" if args.busy else "memprofile")
    print(f"wrote {write_result(result, doc)}")


if __name__ == "__main__":
    main()
