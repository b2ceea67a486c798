"""Smoke test of the benchmark suite: every module imports, and the pure helpers compute what they say.

No timing and no performance figures here: those live in ``bench/`` and ``docs/performance.md``.
"""

from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys
from types import FrameType

import pytest

from bench import profile, report, stats
from bench.ab import REPO, worktree
from bench.instructions import by_object
from bench.latency_split import mean_between
from bench.opcode_tracer import Tally
from bench.procs import cpu_seconds, rss_bytes, syscalls

MODULES = [
    "bench.__main__",
    "bench.ab",
    "bench.baseline_rep",
    "bench.capacity",
    "bench.common",
    "bench.failover",
    "bench.fanin",
    "bench.instructions",
    "bench.keepalive_split",
    "bench.latency_split",
    "bench.loadgen",
    "bench.machine",
    "bench.memprofile",
    "bench.micro_events",
    "bench.micro_gc",
    "bench.micro_journal",
    "bench.micro_consume",
    "bench.micro_loop",
    "bench.micro_seal",
    "bench.opcode_tracer",
    "bench.procs",
    "bench.profile",
    "bench.recovery",
    "bench.replica_stack",
    "bench.replicas_cpu",
    "bench.report",
    "bench.router",
    "bench.sim_server",
    "bench.stack",
    "bench.stats",
    "bench.throughput",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    assert importlib.import_module(name) is not None


def test_spread_is_median_min_max() -> None:
    s = stats.spread([3, 1, 2, 10])
    assert (s.median, s.low, s.high, s.n) == (2.5, 1, 10, 4)
    assert s.as_json() == {"median": 2.5, "min": 1, "max": 10, "n": 4}
    assert s.fmt(1) == "2.5 [1.0–10.0]"


def test_spread_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        stats.spread([])


def test_percentile_is_nearest_rank() -> None:
    samples = [float(x) for x in range(100, 0, -1)]  # unsorted on purpose
    assert stats.percentile(samples, 50) == 50
    assert stats.percentile(samples, 99) == 99
    assert stats.percentile(samples, 100) == 100
    assert stats.percentile([7.0], 1) == 7
    assert math.isnan(stats.percentile([], 50))
    with pytest.raises(ValueError, match="pct"):
        stats.percentile(samples, 0)


def test_ratio_range_is_pessimistic() -> None:
    r = stats.ratio(stats.spread([80, 100, 120]), stats.spread([150, 200, 250]))
    assert r.median == pytest.approx(0.5)
    assert r.low == pytest.approx(80 / 250)
    assert r.high == pytest.approx(120 / 150)
    assert math.isnan(stats.ratio(stats.spread([1]), stats.spread([0])).median)


def test_render_table_aligns_columns() -> None:
    text = stats.render_table(["a", "long header"], [["x", 1], ["yyyy", 22]])
    lines = text.splitlines()
    assert lines[0] == "| a    | long header |"
    assert lines[1] == "|------|-------------|"
    assert lines[3] == "| yyyy | 22          |"
    assert len({len(line) for line in lines}) == 1


def test_proc_readers_see_this_process() -> None:
    assert cpu_seconds(os.getpid()) >= 0
    assert rss_bytes(os.getpid()) > 0
    writes, reads = syscalls(os.getpid())
    assert writes >= 0
    assert reads > 0  # reading /proc is itself a read()


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="bench.ab compares git commits: not a git checkout")
def test_ab_checks_the_other_build_out_and_removes_it() -> None:
    def worktrees() -> str:
        return subprocess.run(
            ["git", "worktree", "list", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout

    with worktree("HEAD") as (path, commit):
        assert (path / "bridge" / "app.py").is_file()
        assert len(commit) == 40
        assert f"worktree {path}" in worktrees()
    assert f"worktree {path}" not in worktrees()


def test_summary_table_renders_without_results_of_this_run() -> None:
    text = report.summary_table(run_id="no-such-run")
    assert text.splitlines()[0].startswith("| target")


def test_profile_summary_charges_layers_and_bridge_functions() -> None:
    collapsed = "\n".join(
        [
            "run (asyncio/runners.py:1);send (/x/bridge/genesys/connector.py:9);write (asyncio/selector_events.py:3) 6",
            "run (asyncio/runners.py:1);on_event (/x/bridge/session/inbound.py:5) 3",
            "run (asyncio/runners.py:1);publish (/v/site-packages/aio_pika/exchange.py:2) 1",
            "garbage line",
        ]
    )
    doc = profile.summarize(collapsed)
    assert doc["samples"] == 10
    assert doc["by_layer"]["event loop (asyncio/selectors/ssl/socket)"] == 0.6
    assert doc["by_layer"]["our code (bridge/)"] == 0.3
    assert doc["by_bridge_function_inclusive"][0] == ("send (genesys/connector.py)", 0.6)
    assert profile.classify("/v/site-packages/aiormq/channel.py").startswith("AMQP")
    assert profile.classify("/somewhere/else.py") == "other"


def test_latency_split_takes_a_histograms_mean_between_two_pages() -> None:
    name = "genesys_bridge_command_duration_seconds"
    before = f'{name}_sum{{type="message.send"}} 1.0\n{name}_count{{type="message.send"}} 10.0\n'
    after = (
        f'{name}_sum{{type="message.send"}} 1.5\n{name}_count{{type="message.send"}} 20.0\n'
        f'{name}_sum{{type="typing.send"}} 9.0\n{name}_count{{type="typing.send"}} 1.0\n'
    )
    assert mean_between(before, after, name, 'type="message.send"') == 0.05
    assert math.isnan(mean_between(before, before, name, ""))


def test_micro_benchmark_ways_print_against_the_reference() -> None:
    lines = stats.against({"intake": [100.0, 110.0, 90.0], "raw": [80.0]}, "intake", "µs/delivery")
    assert lines == [
        "intake 100.0 [90.0–110.0] µs/delivery   1.00x intake",
        "raw    80.0 [80.0–80.0] µs/delivery   0.80x intake",
    ]


def test_callgrind_output_is_split_by_the_object_that_executed_it() -> None:
    dump = "\n".join(
        [
            "version: 1",
            "positions: line",
            "events: Ir",
            "summary: 175",
            "ob=(1) /usr/bin/python3.11",
            "fl=(1) ceval.c",
            "fn=(1) _PyEval_EvalFrameDefault",
            "10 100",
            "cob=(2) /venv/site-packages/pydantic_core/_pydantic_core.so",
            "cfn=(2) serialize",
            "calls=1 0",
            "11 40",  # the call's inclusive cost: counted where the callee's own lines are
            "fi=(2) object.h",  # an inlined file changes the file, not the object
            "+1 5",
            "fe=(1)",
            "-1",  # a position without a cost
            "ob=(2)",
            "fn=(2)",
            "0 30",
            "ob=/usr/lib/x86_64-linux-gnu/libc.so.6",  # not compressed (--compress-strings=no)
            "fn=memcpy",
            "* 20",
            "ob=(3) ???",
            "fn=(3) 0x1234",
            "0 20",
            "totals: 175",
        ]
    )
    assert by_object(dump) == {
        "CPython (interpreter: the bridge's and the libraries' Python)": 105,
        "pydantic-core": 30,
        "C library (memcpy, malloc)": 20,
        "other": 20,
    }
    with pytest.raises(ValueError, match="Ir"):
        by_object("events: Ir Dr\n")


def test_source_paths_are_shown_from_their_package_down() -> None:
    assert profile.short_path("/v/lib/python3.11/site-packages/aiormq/channel.py") == "aiormq/channel.py"
    assert profile.short_path("/usr/lib/python3.11/asyncio/queues.py") == "asyncio/queues.py"
    assert profile.short_path("/tmp/bench-ab-1/build/bridge/amqp/confirm.py") == "bridge/amqp/confirm.py"
    assert profile.short_path("<string>") == "<string>"
    assert (
        profile.short_path(f"{REPO}/client/src/genesys_bridge_client/codec.py")
        == "client/src/genesys_bridge_client/codec.py"
    )


def test_opcode_tally_counts_by_source_file_only_while_on() -> None:
    def finished() -> FrameType:
        return sys._getframe()

    tally = Tally()
    frame = finished()  # a frame no tracer of the test run still visits
    assert tally.trace(frame, "call", None) is None  # off: frames entered are not traced
    tally.on = True
    local = tally.trace(frame, "call", None)
    assert local is not None
    assert frame.f_trace_opcodes
    local(frame, "opcode", None)
    local(frame, "line", None)
    assert tally.opcodes == {__file__: 1}
    assert profile.classify("/x/site-packages/aiormq/channel.py").startswith("AMQP")


def test_opcode_tally_counts_by_function_when_asked() -> None:
    def finished() -> FrameType:
        return sys._getframe()

    tally = Tally(by_function=True)
    tally.on = True
    frame = finished()
    local = tally.trace(frame, "call", None)
    assert local is not None
    local(frame, "opcode", None)
    assert tally.opcodes == {f"{__file__}:test_opcode_tally_counts_by_function_when_asked.<locals>.finished": 1}
    # The layer and the shown path are read from the file part, as for a count by file.
    assert profile.classify("/x/site-packages/aiormq/channel.py:basic_publish").startswith("AMQP")
    assert profile.short_path(f"{REPO}/bridge/amqp/confirm.py:start") == "bridge/amqp/confirm.py:start"
