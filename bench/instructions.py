"""The daemon's instructions per ``message.send``, counted by callgrind: a figure this noisy machine cannot move.

Not in the suite. ``python -m bench.instructions [--ref REF] [--sessions 20] [--rate 8] [--seconds 15]
[--reps 3] [--busy 200]`` runs the daemon under ``valgrind --tool=callgrind`` (counting off until the
sessions are open), beside the simulator and the broker as usual, and counts the user-space instructions it
executes while the load generator paces ``message.send`` at ``--rate`` over ``--sessions`` sessions for
``--seconds``. A window of the same stack doing nothing is counted before the paced windows and one after;
the quieter one's rate is subtracted from each paced window, so what is left is the instructions the
commands cost (work left over from before a window only adds to an idle one). Two phases:

- **young**: the sessions just opened, their records small (the state ``bench.throughput`` measures: it
  sends a few commands per session);
- **busy**: after ``--busy`` more sends per session (counting off), so each record holds its full tails of
  recent Genesys ids and settled outcomes, as a session some way into its conversation does.

Instructions are not time (a system call or a cache miss counts as what it executes in user space, the
kernel's share not at all), but the count is the same whatever else the machine is doing, so two builds
compare without the noise floor of ``bench.ab``: with ``--ref REF`` the build at git ``REF`` is measured the
same way after this one (a temporary worktree, as ``bench.ab`` makes), and the results give B/A per phase;
``--b-env NAME=VALUE`` sets a daemon setting for build B only, so ``--ref HEAD`` with it compares two settings.
Each count is split by the shared object that executed it (the interpreter, pydantic-core, OpenSSL, ...),
from callgrind's own files. ``--count opcodes`` counts bytecodes instead, by source file, or by function with
``BENCH_OPCODES_BY=function`` in the environment (``bench/opcode_tracer.py``). Under callgrind the daemon
runs about 50 times slower, so the rate must stay well under its ceiling there (the latency printed per
window says whether it kept up). Writes ``bench/results/instructions.json``, or ``opcodes.json`` with
``--count opcodes`` (``--result NAME``: ``NAME.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench import profile
from bench.ab import REPO, this_build, worktree
from bench.common import run_and_report
from bench.loadgen import LoadGen
from bench.opcode_tracer import counts_by_function
from bench.procs import raise_nofile_limit
from bench.stack import Stack, bridge_available
from bench.stats import render_table, shown, spread
from bench.throughput import paced_rep

__all__ = ["by_object", "main", "run"]

NAME = "instructions"
#: Who executed an instruction, by the shared object's path (first match wins).
LIBRARIES = (
    ("pydantic-core", re.compile(r"pydantic_core")),
    ("cryptography and OpenSSL (the journal's Fernet seal)", re.compile(r"cryptography|libcrypto|libssl")),
    ("uvloop (libuv)", re.compile(r"uvloop")),
    ("C library (memcpy, malloc)", re.compile(r"/libc[.-]|/ld-linux|/libm[.-]")),
    ("CPython C modules (json, ...)", re.compile(r"lib-dynload")),
    ("other C extensions", re.compile(r"site-packages")),
    ("CPython (interpreter: the bridge's and the libraries' Python)", re.compile(r"python|libpython")),
)
OTHER = "other"
#: Source files kept per window of the opcode count, the busiest first.
TOP_FILES = 20
#: Functions kept instead, when ``BENCH_OPCODES_BY=function`` is in the environment of the whole run.
TOP_FUNCTIONS = 60
_OBJECT = re.compile(r"^ob=(?:\((\d+)\))? ?(.*)$")


def by_object(callgrind_out: str) -> Counter[str]:
    """Self instructions per library (``LIBRARIES``) in the text of one callgrind output file.

    The caller passes a file of one event, ``Ir`` (callgrind's default; raises ``ValueError`` otherwise).
    ``ob=`` names the object of the cost lines that follow; a cost line after ``calls=`` is the call's
    inclusive cost (not counted: the callee's own lines count it); names may be compressed as ``(id) name``
    once (on an ``ob=`` or a ``cob=`` line) and ``(id)`` after. A cost line is the positions (``line`` by
    default, so one number, perhaps relative: ``+2``, ``-1``, ``*``) then the cost.
    """
    names: dict[str, str] = {}
    current = OTHER
    costs: Counter[str] = Counter()
    after_call = False
    positions = 1
    for line in callgrind_out.splitlines():
        if not line:
            continue
        head = line[0]
        if head.isdigit() or head in "+-*":
            if after_call:
                after_call = False
                continue
            fields = line.split()
            if len(fields) > positions:
                costs[current] += int(fields[positions])
        elif line.startswith("calls="):
            after_call = True
        elif line.startswith(("ob=", "cob=")):  # a called object's name is defined once too, on its cob= line
            match = _OBJECT.match(line.removeprefix("c"))
            if match is not None:
                key, name = match.groups()
                if key is not None and name:
                    names[key] = name
                if line[0] == "o":
                    current = (names.get(key, OTHER) if key is not None else name) or OTHER
        elif line.startswith("positions:"):
            positions = len(line.split()) - 1
        elif line.startswith("events:") and line.split()[1:] != ["Ir"]:
            raise ValueError(f"expected callgrind's one event Ir, not {line!r}")
    grouped: Counter[str] = Counter()
    for path, count in costs.items():
        grouped[_library(path)] += count
    return grouped


def _library(path: str) -> str:
    return next((label for label, pattern in LIBRARIES if pattern.search(path)), OTHER)


class Callgrind:
    """The daemon's callgrind, driven with ``callgrind_control``: counting on, zeroed, dumped per window.
    Set :attr:`pid` to the daemon's before the first call; ``valgrind`` must be installed."""

    result = NAME
    unit = "instructions"

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.pid = 0
        self._dumps = 0

    def argv(self, python: list[str]) -> list[str]:
        """The daemon (``python`` and its options) under callgrind, not counting until :meth:`counting`
        (start-up runs about 5× faster)."""
        return [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--compress-strings=no",  # each dump names its objects in full (compressed names span dumps)
            f"--callgrind-out-file={self.out_dir}/callgrind.%p",
            *python,
            "-m",
            "bridge",
            "run",
        ]

    async def _control(self, *args: str) -> None:
        process = await asyncio.create_subprocess_exec(
            "callgrind_control", *args, str(self.pid), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        output, _ = await process.communicate()
        # callgrind_control exits 0 even when it found no such process or could not reach it: read its "OK."
        if process.returncode != 0 or b"OK." not in output:
            raise RuntimeError(f"callgrind_control {' '.join(args)} failed for pid {self.pid}: {output.decode()!r}")

    async def counting(self, on: bool) -> None:
        """Turn counting on or off."""
        await self._control("-i", "on" if on else "off")

    async def zero(self) -> float:
        """Start a window: zero the counts; returns the time they were zeroed by."""
        await self._control("-z")
        return time.monotonic()

    async def window(self) -> tuple[float, dict[str, Any]]:
        """End a window begun by :meth:`zero`: the time it ended from, its total and its split by library."""
        self._dumps += 1
        ended = time.monotonic()
        await self._control("-d", f"window{self._dumps}")
        path = self.out_dir / f"callgrind.{self.pid}.{self._dumps}"
        text = path.read_text(encoding="utf-8", errors="replace")
        path.unlink()
        summary = re.search(r"^summary: (\d+)$", text, re.MULTILINE)
        if summary is None:
            raise RuntimeError(f"callgrind wrote no summary in {path}")
        return ended, {"total": int(summary.group(1)), "by_library": dict(by_object(text))}


class Opcodes:
    """The daemon under ``bench/opcode_tracer.py``: bytecodes executed, by the layers of ``bench.profile`` (the
    layers of its py-spy profiles) and by source file, through the tracer's control files. Set :attr:`pid`
    before the first call (kept for symmetry with :class:`Callgrind`; the files need no pid)."""

    result = "opcodes"
    unit = "opcodes"

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.pid = 0
        self._commands = 0

    def argv(self, python: list[str]) -> list[str]:
        """The daemon (``python`` and its options) under the opcode tracer, not counting until asked."""
        return [*python, str(Path(__file__).with_name("opcode_tracer.py")), str(self.out_dir)]

    async def _control(self, verb: str) -> None:
        self._commands += 1
        done = self.out_dir / "done"
        (self.out_dir / "command.tmp").write_text(f"{verb} {self._commands}", encoding="utf-8")
        (self.out_dir / "command.tmp").replace(self.out_dir / "command")
        async with asyncio.timeout(30):
            while True:  # another process answers through a file: nothing to await but time
                if done.exists():
                    answer = done.read_text(encoding="utf-8")
                    if answer == str(self._commands):
                        return
                    if answer.startswith("error"):
                        raise RuntimeError(f"the opcode tracer failed: {answer}")
                await asyncio.sleep(0.02)  # the tracer's thread polls its command file as often

    async def counting(self, on: bool) -> None:
        """Turn counting on or off."""
        await self._control("on" if on else "off")

    async def zero(self) -> float:
        """Start a window: zero the counts; returns the time they were zeroed by."""
        await self._control("zero")
        return time.monotonic()

    async def window(self) -> tuple[float, dict[str, Any]]:
        """End a window begun by :meth:`zero`: the time it ended from, its total, its split by layer and by
        source file."""
        ended = time.monotonic()
        await self._control("dump")
        path = self.out_dir / f"dump.{self._commands}.json"
        counts = json.loads(path.read_text(encoding="utf-8"))
        path.unlink()
        layers: Counter[str] = Counter()
        files: Counter[str] = Counter()
        for source, count in counts["by_file"].items():
            layers[profile.classify(source)] += count
            files[profile.short_path(source)] += count
        return ended, {"total": counts["total"], "by_library": dict(layers), "by_file": dict(files)}


COUNTERS: dict[str, type[Callgrind] | type[Opcodes]] = {"instructions": Callgrind, "opcodes": Opcodes}


async def _idle(counter: Callgrind | Opcodes, seconds: float) -> tuple[float, dict[str, Any]]:
    """A window of the stack doing nothing: its length and its counts."""
    began = await counter.zero()
    await asyncio.sleep(seconds)  # the measurement: the stack doing nothing for a window
    ended, counts = await counter.window()
    return ended - began, counts


async def _phase(
    stack: Stack, lg: LoadGen, counter: Callgrind | Opcodes, ids: list[str], *, rate: float, seconds: float, reps: int
) -> dict[str, Any]:
    """``reps`` paced windows between two idle ones, each paced window less the idle rate over its length.

    The idle rate taken off is the quieter idle window's: work left over from what came before a window (the
    sends that make sessions busy, a paced window the slowed daemon lagged behind) only ever adds to it, and
    one such window would otherwise take that work off every paced window's count.

    Raises:
        RuntimeError: no paced window got all its outcomes (the daemon did not keep up: lower ``rate``).
    """
    idle = [await _idle(counter, seconds)]
    paced: list[tuple[float, dict[str, Any], dict[str, Any]]] = []
    for _ in range(reps):
        began = await counter.zero()
        result = await paced_rep(stack, lg, ids, rate, seconds)
        ended, counts = await counter.window()
        paced.append((ended - began, counts, result))
    idle.append(await _idle(counter, seconds))
    idle_rates = [round(counts["total"] / length) for length, counts in idle]
    print(f"    idle windows: {', '.join(f'{rate / 1e6:.2f} M' for rate in idle_rates)} {counter.unit}/s", flush=True)
    idle = [min(idle, key=lambda window: window[1]["total"] / window[0])]
    idle_s = sum(length for length, _ in idle)
    idle_total = sum(counts["total"] for _, counts in idle)
    idle_by = {key: _summed(counts.get(key, {}) for _, counts in idle) for key in ("by_library", "by_file")}
    windows: list[dict[str, Any]] = []
    for rep, (length, counts, result) in enumerate(paced, start=1):
        sent = result["sent"]
        share = length / idle_s  # of the idle windows' counts, what this window's length holds
        total = (counts["total"] - idle_total * share) / sent
        window = {
            "sent": sent,
            "complete": result["complete"],
            "mean_ms": result["mean_ms"],
            "seconds": round(length, 2),
            "per_command": round(total),
            "idle_share": round(idle_total * share / counts["total"], 3),
            "by_library": _less_idle(counts["by_library"], idle_by["by_library"], share, sent),
        }
        if "by_file" in counts:  # the opcode tracer's: the source files that execute the most
            files = _less_idle(counts["by_file"], idle_by["by_file"], share, sent)
            top = TOP_FUNCTIONS if counts_by_function() else TOP_FILES
            window["top_files"] = dict(list(files.items())[:top])
        windows.append(window)
        print(
            f"    window {rep}: {total / 1e6:.3f} M {counter.unit} per command "
            f"({sent} sent, mean {result['mean_ms']} ms, idle share {window['idle_share']:.0%})",
            flush=True,
        )
    complete = [w for w in windows if w["complete"]]
    if not complete:
        raise RuntimeError(f"no window got all its outcomes at {rate:g}/s: the slowed daemon did not keep up")
    labels = {label for w in complete for label in w["by_library"]}
    return {
        f"idle_{counter.unit}_per_s": round(idle_total / idle_s),
        "idle_seconds": round(idle_s, 2),
        "idle_windows_per_s": idle_rates,
        "windows": windows,
        "per_command": spread(w["per_command"] for w in complete).as_json(),
        "by_library": {
            label: spread(w["by_library"].get(label, 0) for w in complete).as_json()
            for label in sorted(labels, key=lambda lb: -complete[0]["by_library"].get(lb, 0))
        },
    }


def _summed(counts: Iterable[dict[str, int]]) -> Counter[str]:
    """Several windows' counts, label by label."""
    summed: Counter[str] = Counter()
    for one in counts:
        summed.update(one)
    return summed


def _less_idle(counted: dict[str, int], idle: Counter[str], share: float, sent: int) -> dict[str, int]:
    """Per label, a paced window's count less ``share`` of the idle windows', per command sent: rounded,
    largest first."""
    per_command = {label: (n - idle[label] * share) / sent for label, n in counted.items()}
    return {label: round(v) for label, v in sorted(per_command.items(), key=lambda kv: -kv[1])}


async def _build(
    label: str,
    pythonpath: Path,
    kind: type[Callgrind] | type[Opcodes],
    *,
    sessions: int,
    rate: float,
    seconds: float,
    reps: int,
    busy: int,
    daemon_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One build's young and busy phases; ``daemon_env`` is added to the daemon's environment."""
    with tempfile.TemporaryDirectory(prefix="bench-count-") as out:
        counter = kind(Path(out))
        # -P and PYTHONPATH: the build's bridge/ first, as bench.ab launches it; one hash seed for every run,
        # so dict and set layouts (and what they cost) do not differ from run to run.
        env = {"PYTHONPATH": str(pythonpath), "PYTHONHASHSEED": "0", **(daemon_env or {})}
        daemon = counter.argv([sys.executable, "-P"])
        async with Stack(NAME, max_sessions=sessions, extra_env=env, bridge_argv=daemon) as stack:
            assert stack.bridge is not None
            counter.pid = stack.bridge.pid
            async with LoadGen.of(stack.names) as lg:
                ids = [f"{stack.prefix}.s{i}" for i in range(sessions)]
                await lg.start_sessions(ids, timeout_s=300)
                await lg.follow("command.outcome.#")
                await counter.counting(True)
                print(f"  {label}: young sessions", flush=True)
                young = await _phase(stack, lg, counter, ids, rate=rate, seconds=seconds, reps=reps)
                await counter.counting(False)
                print(f"  {label}: {busy} sends per session, not counted", flush=True)
                await lg.make_busy(ids, busy, timeout_s=300)
                await counter.counting(True)
                print(f"  {label}: busy sessions", flush=True)
                busy_phase = await _phase(stack, lg, counter, ids, rate=rate, seconds=seconds, reps=reps)
    return {"young": young, "busy": busy_phase}


async def run(
    *,
    count: str,
    ref: str | None,
    sessions: int,
    rate: float,
    seconds: float,
    reps: int,
    busy: int,
    b_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The counts; returns the results document (without machine/run id). ``count="instructions"`` needs
    ``valgrind`` on the path. ``b_env`` is added to build B's daemon environment only (``--ref HEAD`` with
    it compares two settings of one build)."""
    missing = bridge_available()
    if missing is not None:
        return {"status": "not available yet", "reason": missing}
    raise_nofile_limit()
    kind = COUNTERS[count]
    options: dict[str, Any] = {"sessions": sessions, "rate": rate, "seconds": seconds, "reps": reps, "busy": busy}
    a_commit, a_changed = this_build()
    doc: dict[str, Any] = {
        "status": "ok",
        "count": kind.unit,
        **options,
        "a_commit": a_commit,
        "a_bridge_changed": a_changed,
    }
    doc["A"] = await _build("A", REPO, kind, **options)
    if ref is not None:
        with worktree(ref) as (path, commit):
            doc["ref"], doc["b_commit"], doc["b_env"] = ref, commit, b_env or {}
            doc["B"] = await _build("B", path, kind, **options, daemon_env=b_env)
        doc["b_over_a"] = {
            phase: round(doc["B"][phase]["per_command"]["median"] / doc["A"][phase]["per_command"]["median"], 4)
            for phase in ("young", "busy")
        }
    return doc


def render(doc: dict[str, Any]) -> str:
    """The printed table: per build and phase, the count per command and its split by library."""
    if doc["status"] != "ok":
        return f"instructions: {doc['status']}: {doc['reason']}"
    scale, prefix, digits = (1e6, "M", 3) if doc["count"] == "instructions" else (1e3, "k", 1)
    builds = [side for side in ("A", "B") if side in doc]
    columns = [(side, phase) for side in builds for phase in ("young", "busy")]

    def cell(figure: dict[str, Any]) -> str:
        return shown({key: value / scale if key != "n" else value for key, value in figure.items()}, digits)

    headers = [f"{prefix} {doc['count']} per message.send", *(f"{side} {phase}" for side, phase in columns)]
    rows = [["all", *(cell(doc[side][phase]["per_command"]) for side, phase in columns)]]
    none = {"median": 0, "min": 0, "max": 0, "n": 0}
    rows.extend(
        [f"  {label}", *(cell(doc[side][phase]["by_library"].get(label, none)) for side, phase in columns)]
        for label in doc["A"]["busy"]["by_library"]
    )
    text = render_table(headers, rows)
    if "b_over_a" in doc:
        text += "\nB/A: " + ", ".join(f"{phase} {value:.4f}" for phase, value in doc["b_over_a"].items())
    return text


def main() -> None:
    """``python -m bench.instructions``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", choices=sorted(COUNTERS), default="instructions", help="what is counted")
    parser.add_argument("--ref", help="also count the build at this git ref, after this one")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rate", type=float, default=8.0, help="commands per second in a counted window")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each window")
    parser.add_argument("--reps", type=int, default=3, help="paced windows per phase")
    parser.add_argument("--busy", type=int, default=200, help="sends per session between the two phases")
    parser.add_argument(
        "--b-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for build B's daemon only, e.g. --ref HEAD --b-env BRIDGE_JOURNAL_FORMAT=2 (repeatable)",
    )
    parser.add_argument("--result", help="results file name (default: instructions, or opcodes)")
    args = parser.parse_args()
    b_env = dict(item.split("=", 1) for item in args.b_env)
    run_and_report(
        args.result or COUNTERS[args.count].result,
        lambda: run(
            count=args.count,
            ref=args.ref,
            sessions=args.sessions,
            rate=args.rate,
            seconds=args.seconds,
            reps=args.reps,
            busy=args.busy,
            b_env=b_env,
        ),
        render,
    )


if __name__ == "__main__":
    main()
