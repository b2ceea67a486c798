"""Two builds of the daemon, side by side: saturation repetitions alternated in pairs, ratios per pair.

``python -m bench.ab REF`` measures this checkout's daemon (A, working tree included) against the daemon at
git ``REF`` (B: a commit, a branch, ``HEAD`` for "without my uncommitted changes"). This machine drifts by
tens of per cent over minutes, so two ``bench.throughput`` runs one after the other cannot tell a change of
a few per cent; here both daemons run at once, each with its own simulator and ``--sessions`` live
sessions, and each pair measures A and B back to back (A first in the first pair, B first in the next, and
so on; an even number of pairs gives each side the lead equally often), so each pair's ratio sees one state
of the machine. A repetition is ``bench.throughput``'s saturation
repetition: ``--commands`` ``message.send`` waiting in the intake while the daemon is paused, then timed
to the last outcome.

Per pair it prints both daemons' commands/s, CPU per command and ``write()``/``read()`` calls per
command, and the summary gives B/A per pair, median [min–max]. ``python -m bench.ab HEAD`` with no change
under ``bridge/`` compares a build with itself: the spread of that run is the noise floor a change must
clear. The results file records A's commit and whether its ``bridge/`` differed from it. B is
checked out into a temporary git worktree (removed at the end) and runs with this environment's
packages, the message-contract package included; only its ``bridge/`` differs. The simulator and the
load generator are this checkout's for both. While one daemon is measured the other idles with its
sessions open (keepalives only).

    python -m bench.ab REF [--pairs 6] [--commands 4000] [--sessions 1000] [--result ab]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import run_and_report
from bench.loadgen import LoadGen
from bench.procs import raise_nofile_limit
from bench.stack import Stack, bridge_available
from bench.stats import render_table, shown, spread
from bench.throughput import drain_rep

__all__ = ["main", "run"]

NAME = "ab"
REPO = Path(__file__).resolve().parents[1]
#: Per repetition, what is compared: B/A of each.
FIGURES = {
    "commands_per_s": "commands/s",
    "bridge_cpu_us_per_command": "CPU per command, µs",
    "bridge_writes_per_command": "write() calls per command",
    "bridge_reads_per_command": "read() calls per command",
}


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[tuple[Path, str]]:
    """``ref`` checked out (detached) in a temporary git worktree; yields its path and commit, removes it."""
    commit = _commit(ref)
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as parent:
        path = Path(parent) / "build"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(path), commit], cwd=REPO, check=True)
        try:
            yield path, commit
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=REPO, check=False)
            # Whatever the remove managed, the directory goes with its parent: drop git's record of it too.
            subprocess.run(["git", "worktree", "prune"], cwd=REPO, check=True)


def this_build() -> tuple[str, bool]:
    """A's commit, and whether its ``bridge/`` differs from that commit (uncommitted changes are measured)."""
    changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "bridge"], cwd=REPO, check=False).returncode
    return _commit("HEAD"), changed != 0


def _commit(ref: str) -> str:
    """The full commit id ``ref`` names in this repository (raises if it names none)."""
    return subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


async def run(*, ref: str, pairs: int, commands: int, sessions: int) -> dict[str, Any]:
    """The comparison; returns the results document (without machine/run id)."""
    missing = bridge_available()
    if missing is not None:
        return {"status": "not available yet", "reason": missing}
    raise_nofile_limit()
    a_commit, a_changed = this_build()
    print(f"A: {a_commit[:10]}{' with uncommitted changes under bridge/' if a_changed else ''}", flush=True)
    with worktree(ref) as (path, commit):
        # Both launched alike. -P: not the current directory first on the path; PYTHONPATH puts the build's
        # bridge/ before the one this environment has installed.
        argv = [sys.executable, "-P", "-m", "bridge", "run"]
        async with (
            Stack(NAME, max_sessions=sessions, extra_env={"PYTHONPATH": str(REPO)}, bridge_argv=argv) as stack_a,
            Stack(NAME, max_sessions=sessions, extra_env={"PYTHONPATH": str(path)}, bridge_argv=argv) as stack_b,
            LoadGen.of(stack_a.names) as lg_a,
            LoadGen.of(stack_b.names) as lg_b,
        ):
            sides = {
                "A": (stack_a, lg_a, [f"{stack_a.prefix}.s{i}" for i in range(sessions)]),
                "B": (stack_b, lg_b, [f"{stack_b.prefix}.s{i}" for i in range(sessions)]),
            }
            for _, lg, ids in sides.values():
                await lg.start_sessions(ids, timeout_s=120)
            reps: list[dict[str, dict[str, Any]]] = []
            for pair in range(pairs):
                measured: dict[str, dict[str, Any]] = {}
                for side in ("A", "B") if pair % 2 == 0 else ("B", "A"):
                    stack, lg, ids = sides[side]
                    measured[side] = await drain_rep(stack, lg, ids, commands)
                reps.append(measured)
                print(
                    f"  pair {pair + 1}: "
                    + "; ".join(
                        f"{side} {r['commands_per_s']:.0f} cmds/s {r['bridge_cpu_us_per_command']:.0f} µs "
                        f"{r['bridge_writes_per_command']:.2f}w/{r['bridge_reads_per_command']:.2f}r {r['statuses']}"
                        for side, r in sorted(measured.items())
                    ),
                    flush=True,
                )
    summary = {
        key: {side: spread(r[side][key] for r in reps).as_json() for side in ("A", "B")}
        | {"b_over_a": spread(r["B"][key] / r["A"][key] for r in reps).as_json()}
        for key in FIGURES
    }
    return {
        "status": "ok",
        "ref": ref,
        "a_commit": a_commit,
        "a_bridge_changed": a_changed,
        "b_commit": commit,
        "sessions": sessions,
        "commands": commands,
        "reps": reps,
        "summary": summary,
    }


def render(doc: dict[str, Any]) -> str:
    """The printed table."""
    if doc["status"] != "ok":
        return f"ab: {doc['status']}: {doc['reason']}"
    rows = [
        [
            label,
            shown(doc["summary"][key]["A"], 2),
            shown(doc["summary"][key]["B"], 2),
            shown(doc["summary"][key]["b_over_a"], 3),
        ]
        for key, label in FIGURES.items()
    ]
    changed = " + changes" if doc.get("a_bridge_changed") else ""
    title = f"A: {doc.get('a_commit', 'this checkout')[:10]}{changed}; B: {doc['ref']} ({doc['b_commit'][:10]})"
    return render_table([title, "A", "B", "B / A in pairs"], rows)


def main() -> None:
    """``python -m bench.ab REF``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ref", help="the git commit or branch to compare this checkout with (B)")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--commands", type=int, default=4000, help="commands per repetition")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--result", default=NAME, help="results file name (bench/results/<name>.json)")
    args = parser.parse_args()
    run_and_report(
        args.result,
        lambda: run(ref=args.ref, pairs=args.pairs, commands=args.commands, sessions=args.sessions),
        render,
    )


if __name__ == "__main__":
    main()
