"""Benchmark 5: recovery. 1,000 live sessions, SIGKILL the bridge, restart it, time the resume.

One simulator (its own process, limits raised: ``bench.sim_server``) and one bridge daemon (its own
process). The N sessions are opened once; then each repetition:

1. lets the journal settle (the last checkpoints are confirmed) and, by default, waits until the last
   connects are a minute old, so the deployment's connect window has room for every resume; then SIGKILLs
   the daemon (a crash);
2. while it is down, the agent sends one message to every session (the backfill to fetch);
3. restarts the daemon with the same settings and key, at the pacing under test, and runs the clock from
   the restart to the moment every session has published ``session.resumed`` *and* every missed message
   has arrived as a ``message.received``. ``/readyz`` (true once recovery finished) is timed too.

Pacing versus Genesys' limits (protocol reference §8). Genesys allows **1,000 new WebSocket connections
per deployment per minute** (configurable per org) and **60 configureSession per session per minute**.
A resume is one connection and one configureSession per session, so the session limit is never near. The
connection limit is what bounds a recovery. The bridge holds every connect to a per-deployment sliding
window of ``BRIDGE_GENESYS_CONNECTS_PER_MIN`` (default 1,000: Genesys' limit) and caps resumes at
``BRIDGE_RESUME_RATE_PER_S``:

- ``--rate 100`` (the headline, the bridge's defaults): 1,000 sessions fit the window's minute, so the
  restart may spend the deployment's whole minute of connections; within the limit by construction.
- ``--floor-rate 1000``: effectively uncapped; what the bridge itself needs (start-up, journal replay,
  1,000 configures, history, publish).
- ``--crash-loop``: kill again as soon as the journal settled, without waiting for the window: a crash loop.
  Each restart counts the connects of the last minute from the journal, so it waits for Genesys' limit,
  and the time to recover is the window's, not the bridge's.

Run: ``python -m bench.recovery [--sessions 1000] [--reps 3] [--rate 100] [--floor-rate 1000] [--crash-loop]``.
Prints a table (median [min–max] of the repetitions) and writes ``bench/results/recovery.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import re
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import write_result
from bench.loadgen import LoadGen
from bench.procs import raise_nofile_limit
from bench.stack import Stack, bridge_available
from bench.stats import Spread, render_table, spread

__all__ = ["main", "recovery_available", "run"]

NAME = "recovery"
#: After the last event of a phase, the sessions' checkpoints (journal saves) are still being confirmed;
#: a SIGKILL inside that window re-publishes a message or two, which would blur the count. 3 s is ample.
JOURNAL_SETTLE_S = 3.0
GENESYS_CONNECTIONS_PER_MIN = 1000  # per deployment (§8; the default, configurable per org)
GENESYS_CONFIGURE_PER_MIN = 60  # per session (§8; not configurable)
GENESYS_LIMITS = (
    f"{GENESYS_CONNECTIONS_PER_MIN:,} new WebSocket connections per deployment per minute; "
    f"{GENESYS_CONFIGURE_PER_MIN} configureSession per session per minute"
)
TARGET_S = 30.0
#: Genesys' connect window: connects older than this no longer count against a deployment's limit.
CONNECT_WINDOW_S = 60.0
#: The suite (``bench/__main__.py``) stops this script after 300 s; the optional floor repetition only runs
#: if it fits before this.
BUDGET_S = 290.0


def recovery_available() -> str | None:
    """None when the daemon resumes sessions from a durable journal at start; otherwise why not."""
    missing = bridge_available()
    if missing is not None:
        return missing
    spec = importlib.util.find_spec("bridge.app")
    source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
    if not re.search(r"\brecover|\bresume_all|\bjournal", source, re.IGNORECASE):
        return "bridge/app.py does not resume sessions from a journal at start yet (durable sessions)"
    if importlib.util.find_spec("bridge.amqp.journal") is None:
        return "no journal store (bridge/amqp/journal.py) yet"
    return None


def pacing_note(rate: float, sessions: int) -> dict[str, Any]:
    """What a pacing means against Genesys' limits, stated next to the figure."""
    per_min = rate * 60
    return {
        "resume_rate_per_s": rate,
        "connects_per_min": round(per_min),
        "within_connection_limit_sustained": per_min <= GENESYS_CONNECTIONS_PER_MIN,
        "pacing_floor_s": round(sessions / rate, 1),
        "configure_per_session_per_min": 1,
    }


async def _wait_ready(stack: Stack, timeout_s: float) -> None:
    """Poll ``/readyz`` every 20 ms until 200 (the daemon is another process: nothing to await)."""
    url = f"http://127.0.0.1:{stack.http_port}/readyz"
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout_s):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.02)


async def one_restart(
    stack: Stack, lg: LoadGen, sessions: int, rate: float, *, connects_until: float | None
) -> dict[str, Any]:
    """SIGKILL, agent messages while down, restart at ``rate``; returns the figures of this cycle.

    ``connects_until`` is the ``time.monotonic()`` of the last connect so far: the kill waits until it is a
    minute old (None: a crash loop, no wait beyond the journal's settling)."""
    waited = 0.0 if connects_until is None else max(0.0, connects_until + CONNECT_WINDOW_S - time.monotonic())
    await asyncio.sleep(max(JOURNAL_SETTLE_S, waited))
    resumed_before = lg.counts.get("session.resumed", 0)
    lg.new_tally()
    await stack.kill_bridge()
    await stack.control("/bench/say", {"count": sessions, "connected": False})
    stack.env["BRIDGE_RESUME_RATE_PER_S"] = str(rate)
    timeout_s = 60 + 2 * sessions / rate
    t0 = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        # start_bridge polls /readyz too, at 50 ms; time it ourselves at 20 ms, beside it.
        ready = tg.create_task(_wait_ready(stack, timeout_s))
        await stack.start_bridge(ready_timeout_s=timeout_s)
        await ready
    ready_s = time.monotonic() - t0
    resumed = await lg.wait_count("session.resumed", resumed_before + sessions, timeout_s=timeout_s)
    resumed_s = time.monotonic() - t0
    backfilled = await lg.wait_arrived(sessions, timeout_s=60)
    done_s = time.monotonic() - t0
    return {
        "rate_per_s": rate,
        "ready_s": round(ready_s, 2),
        "all_resumed_s": round(resumed_s, 2),
        "all_resumed_and_backfilled_s": round(done_s, 2),
        "resumed": lg.counts.get("session.resumed", 0) - resumed_before,
        "backfilled": lg.tally.arrived,
        "failures": dict(lg.tally.failures),
        "complete": resumed and backfilled,
        "waited_for_window_s": round(waited, 1),
    }


async def run(
    *,
    sessions: int,
    reps: int,
    rate: float,
    floor_rate: float | None,
    budget_s: float = BUDGET_S,
    crash_loop: bool = False,
) -> dict[str, Any]:
    """The whole benchmark; returns the results document (also written after every repetition, so a
    suite that stops this script at its time limit still finds the repetitions that ran)."""
    missing = recovery_available()
    if missing is not None:
        return {"status": "not available yet", "reason": missing}
    raise_nofile_limit()
    started = time.monotonic()
    headline: list[dict[str, Any]] = []
    floor: list[dict[str, Any]] = []
    async with (
        Stack(NAME, max_sessions=sessions) as stack,
        LoadGen.of(stack.names) as lg,
    ):
        ids = [f"{stack.prefix}.s{i}" for i in range(sessions)]
        open_s = await lg.start_sessions(ids, timeout_s=180)
        connects_until = time.monotonic()
        print(f"  opened {sessions:,} sessions in {open_s:.1f} s", flush=True)
        await lg.follow("session.resumed.#")
        await lg.follow("message.received.#")
        for rep in range(reps):
            row = await one_restart(stack, lg, sessions, rate, connects_until=None if crash_loop else connects_until)
            connects_until = time.monotonic()
            print(f"  rep {rep + 1} at {rate:g}/s: {row}", flush=True)
            headline.append(row)
            write_result(NAME, _document(sessions, reps, rate, floor_rate, headline, floor, crash_loop))
        longest = max(r["all_resumed_and_backfilled_s"] for r in headline) + JOURNAL_SETTLE_S + 5
        if not crash_loop:
            longest += CONNECT_WINDOW_S
        if floor_rate and time.monotonic() - started + longest < budget_s:
            row = await one_restart(
                stack, lg, sessions, floor_rate, connects_until=None if crash_loop else connects_until
            )
            print(f"  floor at {floor_rate:g}/s: {row}", flush=True)
            floor.append(row)
        elif floor_rate:
            print(f"  floor rep skipped: it would not fit in the {budget_s:.0f} s budget", flush=True)
    return _document(sessions, reps, rate, floor_rate, headline, floor, crash_loop)


def _document(
    sessions: int,
    reps: int,
    rate: float,
    floor_rate: float | None,
    headline: list[dict[str, Any]],
    floor: list[dict[str, Any]],
    crash_loop: bool,
) -> dict[str, Any]:
    total = spread(r["all_resumed_and_backfilled_s"] for r in headline)
    doc: dict[str, Any] = {
        "status": "ok",
        "options": {
            "sessions": sessions,
            "reps": reps,
            "rate": rate,
            "floor_rate": floor_rate,
            "crash_loop": crash_loop,
        },
        "genesys_limits": GENESYS_LIMITS,
        "pacing": pacing_note(rate, sessions),
        "summary": {
            "all_resumed_and_backfilled_s": total.as_json(),
            "all_resumed_s": spread(r["all_resumed_s"] for r in headline).as_json(),
            "ready_s": spread(r["ready_s"] for r in headline).as_json(),
        },
        "targets": {
            "max_s": TARGET_S,
            "met": len(headline) == reps and total.median <= TARGET_S and all(r["complete"] for r in headline),
        },
        "reps": headline,
    }
    if floor:
        doc["floor"] = {"pacing": pacing_note(floor[0]["rate_per_s"], sessions), "reps": floor}
    return doc


def render(doc: dict[str, Any]) -> str:
    """The printed table."""
    if doc["status"] != "ok":
        return f"recovery: {doc['status']}: {doc['reason']}"

    def sp(d: dict[str, Any]) -> str:
        return Spread.of(d).fmt(1)

    s = doc["summary"]
    pacing = doc["pacing"]
    rows = [
        [
            "all sessions resumed + backfill published, s",
            sp(s["all_resumed_and_backfilled_s"]) + f" (target ≤ {TARGET_S:g})",
        ],
        ["all sessions resumed, s", sp(s["all_resumed_s"])],
        ["/readyz true after, s", sp(s["ready_s"])],
        [
            "pacing",
            f"{pacing['resume_rate_per_s']:g} resumes/s = {pacing['connects_per_min']:,} connects/min "
            f"(floor {pacing['pacing_floor_s']:g} s for {doc['options']['sessions']:,}); 1 configureSession/session",
        ],
        ["Genesys limits", doc["genesys_limits"]],
        [
            "kills",
            "back to back (a crash loop: each restart waits for the connect window)"
            if doc["options"].get("crash_loop")
            else "each once the last connects were a minute old (the window has room for every resume)",
        ],
    ]
    if "floor" in doc:
        f = doc["floor"]["reps"][0]
        rows.append(
            [
                f"unpaced floor ({f['rate_per_s']:g}/s, one burst), s",
                f"{f['all_resumed_and_backfilled_s']:.1f} (resumed {f['all_resumed_s']:.1f}, ready {f['ready_s']:.1f})",
            ]
        )
    title = f"recovery ({doc['options']['sessions']:,} sessions, SIGKILL, {len(doc['reps'])} reps)"
    return render_table([title, "median [min–max]"], rows)


def main() -> None:
    """``python -m bench.recovery``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100.0, help="BRIDGE_RESUME_RATE_PER_S of the headline reps")
    parser.add_argument("--floor-rate", type=float, default=1000.0, help="one extra unpaced rep (0: skip)")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="skip the floor rep past this")
    parser.add_argument("--crash-loop", action="store_true", help="kill again at once, not after the window")
    args = parser.parse_args()
    doc = asyncio.run(
        run(
            sessions=args.sessions,
            reps=args.reps,
            rate=args.rate,
            floor_rate=args.floor_rate or None,
            budget_s=args.budget_s,
            crash_loop=args.crash_loop,
        )
    )
    print(render(doc))
    print(f"wrote {write_result(NAME, doc)}")


if __name__ == "__main__":
    main()
