"""Where the bridge's CPU goes under load: ``python -m bench.profile throughput|fanin|idle|open|durable``.

Not part of ``python -m bench`` (a profiler perturbs what it measures). It sets up the same stack as the
benchmark, attaches ``py-spy record`` (sampling, 100 Hz, no code change) to the bridge process for the
loaded phase, and prints two views of the samples:

- by *layer*: the package of the innermost frame (AMQP client stack, event loop, websockets, our code,
  pydantic, JSON, logging, metrics, other);
- by *bridge function, inclusive*: the innermost ``bridge/`` frame of each sample, so library time is
  charged to the bridge code that called it;
- by function, self time (the innermost frame; time in C code counts for its Python caller).

``durable`` profiles the durable baseline instead (``bench/baseline_pipeline.py --durable`` on uvloop, no
bridge code), over its repetition's whole measured window (``--commands``, not ``--seconds``, sizes it):
the same broker work as ``throughput`` without the bridge, so the two profiles side by side say which
layers the bridge's code adds to. Both ``durable`` and ``throughput`` also turn each layer's share into CPU
per command: the pipeline's own CPU per command in its repetition, and the bridge's CPU over the outcomes
that arrived in the profiled window.

Writes the raw collapsed stacks to ``$BENCH_LOG_DIR/profile-<scenario>.txt`` (large) and the summary to
``bench/results/profile-<scenario>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.baseline_pipeline import CLOCK_FILE_ENV, RESULTS_DIR
from bench.common import write_result
from bench.loadgen import LoadGen, message_send
from bench.procs import Child, cpu_seconds, raise_nofile_limit
from bench.stack import LOG_DIR, Stack, bridge_available
from bench.stats import render_table

__all__ = ["classify", "main", "short_path", "summarize"]

_REPO = Path(__file__).resolve().parents[1]
#: Entry frames at the bottom of every stack: they say nothing about where the time goes.
_ENTRY_POINTS = ("bridge/cli.py", "bridge/__main__.py")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
#: (layer, substrings of the file path), first match wins (innermost frame decides).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AMQP client (aio-pika/aiormq/pamqp)", ("aio_pika/", "aiormq/", "pamqp/")),
    ("websockets", ("websockets/",)),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("JSON", ("json/", "orjson")),
    ("logging (structlog)", ("structlog/", "logging/")),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("our code (bridge/)", ("bridge/",)),
    ("the durable baseline's own code (bench/)", ("bench/",)),
    ("event loop (asyncio/selectors/ssl/socket)", ("asyncio/", "selectors.py", "socket.py", "ssl.py", "uvloop")),
)


def classify(path: str) -> str:
    """The layer of a source file path (see :data:`LAYERS`); ``"other"`` when none matches."""
    for layer, needles in LAYERS:
        if any(n in path for n in needles):
            return layer
    return "other"


def short_path(path: str) -> str:
    """A source file's path from its package down (``aiormq/channel.py``, ``asyncio/queues.py``,
    ``bridge/amqp/confirm.py``), without the machine's directories."""
    short = path.split("site-packages/")[-1].split("python3.11/")[-1].removeprefix(f"{_REPO}/")
    if short.startswith("/") and "/bridge/" in short:  # another checkout of the daemon, wherever it lies
        short = short[short.rindex("/bridge/") + 1 :]
    return short


def summarize(collapsed: str) -> dict[str, Any]:
    """Layer shares and the top inclusive bridge functions from py-spy's raw (collapsed) output."""
    layers: Counter[str] = Counter()
    funcs: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [m for f in stack.split(";") if (m := _FRAME.match(f))]
        if not frames:
            continue
        total += count
        layers[classify(frames[-1].group("file"))] += count
        leaf_file = short_path(frames[-1].group("file"))
        leaves[f"{frames[-1].group('func')} ({leaf_file})"] += count
        for frame in reversed(frames):
            path = frame.group("file")
            if "bridge/" in path and not path.endswith(_ENTRY_POINTS):
                funcs[f"{frame.group('func')} ({frame.group('file').split('bridge/', 1)[1]})"] += count
                break
        else:
            funcs["(no bridge frame: loop, library callbacks)"] += count
    share = {k: round(v / total, 3) for k, v in layers.most_common()} if total else {}
    top = [(k, round(v / total, 3)) for k, v in funcs.most_common(20)] if total else []
    self_time = [(k, round(v / total, 3)) for k, v in leaves.most_common(20)] if total else []
    return {"samples": total, "by_layer": share, "by_bridge_function_inclusive": top, "self_time": self_time}


def _split_per_command(doc: dict[str, Any], cpu_us: float) -> None:
    """Add each layer's share of ``cpu_us`` (CPU per command, µs) to a :func:`summarize` result."""
    doc["by_layer_us_per_command"] = {k: round(v * cpu_us) for k, v in doc["by_layer"].items()}


def _py_spy(pid: int, seconds: float, out: Path) -> list[str]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    options = ["--duration", str(int(seconds)), "--rate", "100", "--format", "raw", "--output", str(out)]
    return [py_spy, "record", "--pid", str(pid), *options]


async def _profile_durable(sessions: int, commands: int, out: Path) -> dict[str, Any]:
    """py-spy on the durable baseline over its first repetition's whole measured window, so the samples
    and the pipeline's CPU per command cover the same commands."""
    clock = Path(LOG_DIR) / "profile-durable.clock"  # exists while the first repetition's clock runs
    figures = RESULTS_DIR / "profile-durable-pipeline.json"
    clock.unlink(missing_ok=True)
    figures.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "bench.baseline_pipeline", "--durable", "--loop", "uvloop", "--reps", "1"]
    argv += ["--sessions", str(sessions), "--commands", str(commands), "--result", figures.stem]
    argv += ["--max-seconds", "300"]
    env = {**os.environ, CLOCK_FILE_ENV: str(clock)}
    async with Child(argv, name="durable-baseline", env=env, log_path=str(out) + ".pipeline.log") as pipeline:
        assert pipeline.proc is not None
        # The signal is a file the other process makes and removes, so it is polled; its output stays as is.
        async with asyncio.timeout(240):
            while not clock.exists():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        async with Child(_py_spy(pipeline.pid, 300, out), name="py-spy", log_path=str(out) + ".log") as spy:
            assert spy.proc is not None
            async with asyncio.timeout(300):
                while clock.exists():  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            spy.proc.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
            async with asyncio.timeout(30):
                await spy.proc.wait()
        async with asyncio.timeout(300):
            if await pipeline.proc.wait() != 0:
                raise RuntimeError(f"the durable baseline failed: see {out}.pipeline.log")
    return _durable_summary(out, figures, sessions)


def _durable_summary(out: Path, figures_path: Path, sessions: int) -> dict[str, Any]:
    figures = json.loads(figures_path.read_text(encoding="utf-8"))
    figures_path.unlink()  # a profiled run: its figures are perturbed, not results
    if not figures["repetitions"]:
        raise RuntimeError("the durable baseline finished no repetition")
    rep = figures["repetitions"][0]
    doc = summarize(out.read_text(encoding="utf-8") if out.exists() else "")
    doc["pipeline"] = {k: rep[k] for k in ("commands", "seconds", "commands_per_s", "cpu_us_per_command")}
    _split_per_command(doc, float(rep["cpu_us_per_command"]))
    return {"scenario": "durable", "sessions": sessions, "seconds": rep["seconds"], **doc}


async def _profile(scenario: str, seconds: float, sessions: int, commands: int) -> dict[str, Any]:
    raise_nofile_limit()
    os.makedirs(LOG_DIR, exist_ok=True)
    out = Path(LOG_DIR) / f"profile-{scenario}.txt"  # raw stacks are large: kept out of bench/results
    if scenario == "durable":
        return await _profile_durable(sessions, commands, out)
    # idle: keepalives as bench/capacity.py runs them (ping and echo every 30 s), sampled over one full
    # interval once every session has passed its first one.
    env = {"BRIDGE_WS_PING_INTERVAL_S": "30", "BRIDGE_ECHO_INTERVAL_S": "30"} if scenario == "idle" else {}
    per_command: float | None = None
    async with (
        Stack(f"profile-{scenario}", max_sessions=sessions, extra_env=env) as stack,
        LoadGen.of(stack.names) as lg,
    ):
        ids = [f"{stack.prefix}.s{i}" for i in range(sessions)]
        if scenario != "open":
            await lg.start_sessions(ids, timeout_s=60 + sessions / 20)
        if scenario == "idle":
            await asyncio.sleep(30)
        assert stack.bridge is not None
        async with Child(_py_spy(stack.bridge.pid, seconds, out), name="py-spy", log_path=str(out) + ".log") as spy:
            await asyncio.sleep(0.5)  # py-spy attaches
            if scenario == "throughput":
                await lg.follow("command.outcome.#")
                tally, cpu_before = lg.new_tally(), cpu_seconds(stack.bridge.pid)
                # Saturate: far more than the bridge can do in the window; the profile covers the window only.
                await lg.publish_paced(lambda i: message_send(ids[i % len(ids)]), 3000, seconds)
                if tally.arrived:
                    per_command = (cpu_seconds(stack.bridge.pid) - cpu_before) / tally.arrived * 1e6
            elif scenario == "open":
                with contextlib.suppress(TimeoutError):  # the profile covers the first ``seconds`` only
                    await lg.start_sessions(ids, timeout_s=seconds)
            elif scenario == "fanin":
                await lg.follow("message.received.#")
                await stack.control("/bench/say_paced", {"rate": 3000, "duration_s": seconds})
            else:
                await asyncio.sleep(seconds)
            assert spy.proc is not None
            async with asyncio.timeout(seconds + 30):
                await spy.proc.wait()
    collapsed = out.read_text(encoding="utf-8") if out.exists() else ""
    doc = summarize(collapsed)
    if per_command is not None:  # throughput: the bridge's CPU per outcome in the window, split by layer
        doc["bridge_cpu_us_per_command"] = round(per_command)
        _split_per_command(doc, per_command)
    return {"scenario": scenario, "sessions": sessions, "seconds": seconds, **doc}


def main() -> None:
    """``python -m bench.profile <scenario>``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=("throughput", "fanin", "idle", "open", "durable"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--commands", type=int, default=8000, help="durable: commands in its repetition")
    args = parser.parse_args()
    missing = bridge_available()
    if missing is not None:
        print(f"profile: not available yet: {missing}")
        return
    doc = asyncio.run(_profile(args.scenario, args.seconds, args.sessions, args.commands))
    print(f"{doc['samples']} samples")
    per_command = doc.get("by_layer_us_per_command", {})
    print(
        render_table(
            ["layer (innermost frame)", "share", "µs per command"],
            [[k, f"{v:.1%}", per_command.get(k, "—")] for k, v in doc["by_layer"].items()],
        )
    )
    if "pipeline" in doc:
        print(f"durable baseline in the window: {doc['pipeline']}")
    if "bridge_cpu_us_per_command" in doc:
        print(f"bridge CPU per command in the window: {doc['bridge_cpu_us_per_command']} µs")
    print()
    print(
        render_table(
            ["bridge function (inclusive of what it calls)", "share"],
            [[k, f"{v:.1%}"] for k, v in doc["by_bridge_function_inclusive"]],
        )
    )
    print()
    print(render_table(["function (self time)", "share"], [[k, f"{v:.1%}"] for k, v in doc["self_time"]]))
    print(f"wrote {write_result(f'profile-{args.scenario}', doc)}")


if __name__ == "__main__":
    main()
