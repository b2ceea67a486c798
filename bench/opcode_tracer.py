"""Runs ``genesys-bridge run`` counting the bytecodes it executes, by source file, for ``bench.instructions``.

Not imported by anything: started by path, ``python -P bench/opcode_tracer.py CONTROL_DIR``, so that the
daemon's ``bridge`` package is whichever ``PYTHONPATH`` names (this file uses the standard library only).
Counting is off until asked: a thread polls ``CONTROL_DIR/command`` (``on N``, ``off N``, ``zero N``,
``dump N``), does it and writes ``N`` to ``CONTROL_DIR/done``; ``dump N`` writes the counts since the last
``zero`` to ``CONTROL_DIR/dump.N.json`` as ``{"total": opcodes, "by_file": {source file: opcodes}}``. Only
the main thread is traced: the daemon's event loop and everything it runs (its few helper threads are not).
With ``BENCH_OPCODES_BY=function`` in the environment the counts are by function, each keyed
``source file:qualified name`` (``Class.method``; a function's nested functions by their own).

While counting is off, the trace function only declines each call; while on, every frame entered (a
coroutine resumed included) reports each opcode it executes, which slows the daemon tens of times.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from types import FrameType
from typing import Any

POLL_S = 0.02


def counts_by_function() -> bool:
    """Whether this run counts by function: ``BENCH_OPCODES_BY=function`` in the environment."""
    return os.environ.get("BENCH_OPCODES_BY") == "function"


class Tally:
    """Opcodes per source file (or per function), and the switch the trace function reads."""

    def __init__(self, *, by_function: bool = False) -> None:
        self.on = False
        self.by_function = by_function
        self.opcodes: Counter[str] = Counter()

    def trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        """The global trace function: opt a frame into opcode events while counting is on."""
        if not self.on:
            return None
        frame.f_trace_lines = False
        frame.f_trace_opcodes = True
        return self._local

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode" and self.on:
            code = frame.f_code
            self.opcodes[f"{code.co_filename}:{code.co_qualname}" if self.by_function else code.co_filename] += 1
        return self._local


def _serve(control: str, tally: Tally) -> None:
    """Poll for commands until the process ends (a daemon thread, never traced). A failure is written to the
    done file, for the benchmark to raise."""
    command_path = os.path.join(control, "command")
    while True:
        time.sleep(POLL_S)
        try:
            with open(command_path, encoding="utf-8") as fh:
                verb, number = fh.read().split()
        except (FileNotFoundError, ValueError):
            continue
        try:
            os.unlink(command_path)
            _obey(control, tally, verb, number)
            answer = number
        except Exception as exc:  # reported, not raised: the thread must keep answering
            answer = f"error {type(exc).__name__}: {exc}"
        with open(os.path.join(control, "done.tmp"), "w", encoding="utf-8") as fh:
            fh.write(answer)
        os.replace(os.path.join(control, "done.tmp"), os.path.join(control, "done"))


def _obey(control: str, tally: Tally, verb: str, number: str) -> None:
    if verb == "on":
        tally.on = True
    elif verb == "off":
        tally.on = False
    elif verb == "zero":
        tally.opcodes = Counter()
    elif verb == "dump":
        counts = dict(tally.opcodes)
        with open(os.path.join(control, f"dump.{number}.json"), "w", encoding="utf-8") as fh:
            json.dump({"total": sum(counts.values()), "by_file": counts}, fh)
    else:
        raise ValueError(f"unknown command {verb!r}")


def main() -> None:
    """``python -P bench/opcode_tracer.py CONTROL_DIR``: the daemon's ``run``, counted on command."""
    control = sys.argv[1]
    tally = Tally(by_function=counts_by_function())
    threading.Thread(target=_serve, args=(control, tally), name="opcode-control", daemon=True).start()
    sys.settrace(tally.trace)  # this thread's: the daemon runs its event loop here
    from bridge.cli import main as bridge_main

    raise SystemExit(bridge_main(["run"]))


if __name__ == "__main__":
    main()
