"""Benchmark 5: recovery. 1,000 live sessions, SIGKILL the bridge, restart it, time the resume.

Each repetition: a fresh simulator and bridge; open N sessions; give the journal a moment; SIGKILL the
daemon; while it is down the agent sends one message to every session (the backfill to fetch); restart
the daemon with the same settings and key; the clock runs from the restart to the moment every session
has published ``session.resumed`` *and* every missed message has arrived as a ``message.received``.
``/readyz`` (true once recovery finished) is timed too.

Pacing: the bridge resumes ``BRIDGE_RESUME_RATE_PER_S`` sessions per second (reported). Genesys allows
1,000 new WebSocket connections per deployment per minute and 60 configureSession per session per
minute (protocol reference §8); both are stated next to the figure.

Until durable sessions exist (issue 4: the daemon resumes sessions from its journal on start), the
script reports "not available yet" and why.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import re
from pathlib import Path
from typing import Any

from bench.common import AMQP_URL, write_result
from bench.loadgen import LoadGen
from bench.procs import raise_nofile_limit
from bench.stack import Stack, bridge_available
from bench.stats import Spread, render_table, spread

__all__ = ["main", "recovery_available", "run"]

NAME = "recovery"
JOURNAL_SETTLE_S = 3.0
GENESYS_LIMITS = "1,000 new WebSocket connections per deployment per minute; 60 configureSession per session per minute"


def recovery_available() -> str | None:
    """None when the daemon resumes sessions from a durable journal at start; otherwise why not."""
    missing = bridge_available()
    if missing is not None:
        return missing
    spec = importlib.util.find_spec("bridge.app")
    source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
    if not re.search(r"\brecover|\bresume_all|\bjournal", source, re.IGNORECASE):
        return "bridge/app.py does not resume sessions from a journal at start yet (issue 4, durable sessions)"
    if importlib.util.find_spec("bridge.amqp.journal") is None:
        return "no journal store (bridge/amqp/journal.py) yet"
    return None


async def one_rep(sessions: int) -> dict[str, Any]:
    """One kill/restart cycle; returns its figures."""
    async with (
        Stack(NAME, max_sessions=sessions) as stack,
        LoadGen(AMQP_URL, command_exchange=stack.command_exchange, event_exchange=stack.event_exchange) as lg,
    ):
        ids = [f"{stack.prefix}.s{i}" for i in range(sessions)]
        await lg.start_sessions(ids, timeout_s=120)
        await asyncio.sleep(JOURNAL_SETTLE_S)
        await lg.follow("session.resumed.#")
        await lg.follow("message.received.#")
        lg.new_tally()
        await stack.kill_bridge()
        await stack.control("/bench/say", {"count": sessions, "connected": False})
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await stack.start_bridge(ready_timeout_s=300)
        ready_s = loop.time() - t0
        resumed = await lg.wait_count("session.resumed", sessions, timeout_s=300)
        backfilled = await lg.wait_arrived(sessions, timeout_s=60)
        done_s = loop.time() - t0
        return {
            "sessions": sessions,
            "ready_s": round(ready_s, 2),
            "all_resumed_and_backfilled_s": round(done_s, 2),
            "resumed": lg.counts.get("session.resumed", 0),
            "backfilled": lg.tally.arrived,
            "complete": resumed and backfilled,
            "resume_rate_per_s": stack.env.get("BRIDGE_RESUME_RATE_PER_S", "default (10)"),
        }


async def run(*, sessions: int, reps: int) -> dict[str, Any]:
    """The whole benchmark; returns the results document."""
    missing = recovery_available()
    if missing is not None:
        return {"status": "not available yet", "reason": missing}
    raise_nofile_limit()
    rows = []
    for rep in range(reps):
        row = await one_rep(sessions)
        print(f"  rep {rep + 1}: {row}", flush=True)
        rows.append(row)
    total = spread(r["all_resumed_and_backfilled_s"] for r in rows)
    return {
        "status": "ok",
        "options": {"sessions": sessions, "reps": reps},
        "genesys_limits": GENESYS_LIMITS,
        "summary": {
            "all_resumed_and_backfilled_s": total.as_json(),
            "ready_s": spread(r["ready_s"] for r in rows).as_json(),
        },
        "targets": {"max_s": 30.0, "met": total.median <= 30.0 and all(r["complete"] for r in rows)},
        "reps": rows,
    }


def render(doc: dict[str, Any]) -> str:
    """The printed table."""
    if doc["status"] != "ok":
        return f"recovery: {doc['status']}: {doc['reason']}"

    def sp(d: dict[str, Any]) -> str:
        return Spread(d["median"], d["min"], d["max"], d["n"]).fmt(1)

    s = doc["summary"]
    rows = [
        ["all sessions resumed + backfill published, s", sp(s["all_resumed_and_backfilled_s"]) + " (target ≤ 30)"],
        ["/readyz true after, s", sp(s["ready_s"])],
        ["pacing", f"{doc['reps'][0]['resume_rate_per_s']} resumes/s; Genesys: {doc['genesys_limits']}"],
    ]
    return render_table([f"recovery ({doc['options']['sessions']:,} sessions, SIGKILL)", "median [min–max]"], rows)


def main() -> None:
    """``python -m bench.recovery``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    doc = asyncio.run(run(sessions=args.sessions, reps=args.reps))
    print(render(doc))
    print(f"wrote {write_result(NAME, doc)}")


if __name__ == "__main__":
    main()
