"""Smoke test of the benchmark suite: every module imports, and the pure helpers compute what they say.

No timing and no performance figures here: those live in ``bench/`` and ``docs/performance.md``.
"""

from __future__ import annotations

import importlib
import math
import os
import subprocess

import pytest

from bench import profile, report, stats
from bench.ab import REPO, worktree
from bench.latency_split import mean_between
from bench.procs import cpu_seconds, rss_bytes, syscalls

MODULES = [
    "bench.__main__",
    "bench.ab",
    "bench.baseline_rep",
    "bench.capacity",
    "bench.common",
    "bench.failover",
    "bench.fanin",
    "bench.keepalive_split",
    "bench.latency_split",
    "bench.loadgen",
    "bench.machine",
    "bench.memprofile",
    "bench.micro_events",
    "bench.micro_gc",
    "bench.micro_consume",
    "bench.micro_loop",
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
