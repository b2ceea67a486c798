"""Where the bridge's CPU goes under load: ``python -m bench.profile throughput|fanin|idle|open``.

Not part of ``python -m bench`` (a profiler perturbs what it measures). It sets up the same stack as the
benchmark, attaches ``py-spy record`` (sampling, 100 Hz, no code change) to the bridge process for the
loaded phase, and prints two views of the samples:

- by *layer*: the package of the innermost frame (AMQP client stack, event loop, websockets, our code,
  pydantic, JSON, logging, metrics, other);
- by *bridge function, inclusive*: the innermost ``bridge/`` frame of each sample, so library time is
  charged to the bridge code that called it;
- by function, self time (the innermost frame; time in C code counts for its Python caller).

Writes the raw collapsed stacks to ``$BENCH_LOG_DIR/profile-<scenario>.txt`` (large) and the summary to
``bench/results/profile-<scenario>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import write_result
from bench.loadgen import LoadGen, message_send
from bench.procs import Child, raise_nofile_limit
from bench.stack import LOG_DIR, Stack, bridge_available
from bench.stats import render_table

__all__ = ["classify", "main", "summarize"]

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
    ("event loop (asyncio/selectors/ssl/socket)", ("asyncio/", "selectors.py", "socket.py", "ssl.py", "uvloop")),
)


def classify(path: str) -> str:
    """The layer of a source file path (see :data:`LAYERS`); ``"other"`` when none matches."""
    for layer, needles in LAYERS:
        if any(n in path for n in needles):
            return layer
    return "other"


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
        leaf_file = frames[-1].group("file").split("site-packages/")[-1].split("python3.11/")[-1]
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


async def _profile(scenario: str, seconds: float, sessions: int) -> dict[str, Any]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    raise_nofile_limit()
    os.makedirs(LOG_DIR, exist_ok=True)
    out = Path(LOG_DIR) / f"profile-{scenario}.txt"  # raw stacks are large: kept out of bench/results
    # idle: keepalives as bench/capacity.py runs them (ping and echo every 30 s), sampled over one full
    # interval once every session has passed its first one.
    env = {"BRIDGE_WS_PING_INTERVAL_S": "30", "BRIDGE_ECHO_INTERVAL_S": "30"} if scenario == "idle" else {}
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
        argv = [py_spy, "record", "--pid", str(stack.bridge.pid), "--duration", str(int(seconds))]
        argv += ["--rate", "100", "--format", "raw", "--output", str(out)]
        async with Child(argv, name="py-spy", log_path=str(out) + ".log") as spy:
            await asyncio.sleep(0.5)  # py-spy attaches
            if scenario == "throughput":
                await lg.follow("command.outcome.#")
                # Saturate: far more than the bridge can do in the window; the profile covers the window only.
                await lg.publish_paced(lambda i: message_send(ids[i % len(ids)]), 3000, seconds)
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
    return {"scenario": scenario, "sessions": sessions, "seconds": seconds, **summarize(collapsed)}


def main() -> None:
    """``python -m bench.profile <scenario>``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=("throughput", "fanin", "idle", "open"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sessions", type=int, default=1000)
    args = parser.parse_args()
    missing = bridge_available()
    if missing is not None:
        print(f"profile: not available yet: {missing}")
        return
    doc = asyncio.run(_profile(args.scenario, args.seconds, args.sessions))
    print(f"{doc['samples']} samples")
    print(render_table(["layer (innermost frame)", "share"], [[k, f"{v:.1%}"] for k, v in doc["by_layer"].items()]))
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
