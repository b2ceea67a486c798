"""The suite's summary: every performance target next to its measured figure and verdict.

Reads ``bench/results/*.json`` (only results from the given run id count) and renders the markdown
table that ``docs/performance.md`` shows. ``python -m bench.report`` prints it for the latest results.
"""

from __future__ import annotations

from typing import Any

from bench.common import load_result
from bench.stats import Spread, render_table
from bridge.config import Settings

__all__ = ["details", "machine_line", "main", "summary_table"]


def _sp(d: dict[str, Any], digits: int = 1, unit: str = "") -> str:
    return Spread(d["median"], d["min"], d["max"], d.get("n", 0)).fmt(digits, unit)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _rows(run_id: str | None) -> list[list[str]]:
    def get(name: str) -> dict[str, Any] | None:
        doc = load_result(name)
        if doc is None or (run_id is not None and doc.get("run_id") not in (run_id, None)):
            return None
        return doc

    rows: list[list[str]] = []
    base = get("baseline_pipeline")
    if base is not None:
        s = base["summary"]["commands_per_s"]
        rows.append(["Baseline pipeline (aio-pika + websockets, 1,000 sockets)", "—", _sp(s, 0, " cmds/s"), "—"])
    tp = get("throughput")
    if tp is not None and tp.get("status") == "ok":
        s = tp["summary"]
        rows.append(
            [
                "Throughput: bridge ≥ 50 % of baseline",
                "≥ 0.50",
                f"{_sp(s['bridge_commands_per_s'], 0, ' cmds/s')} = {_sp(s['ratio_to_baseline'], 2)} × baseline",
                _verdict(tp["targets"]["throughput_met"]),
            ]
        )
        if "durable_baseline_commands_per_s" in s:
            rows.append(
                [
                    "Durable baseline (the guarantees' broker work, no bridge code, uvloop)",
                    "—",
                    f"{_sp(s['durable_baseline_commands_per_s'], 0, ' cmds/s')} = "
                    f"{_sp(s['durable_to_baseline_pairs'], 2)} × baseline; bridge = "
                    f"{_sp(s['durable_pair_ratio'], 2)} × it",
                    "—",
                ]
            )
        lat = s["latency"]["50%"]
        rows.append(
            [
                "Latency: p99 at 50 % of saturation",
                "≤ 50 ms",
                f"p99 {_sp(lat['p99_ms'], 1, ' ms')} (p50 {_sp(lat['p50_ms'], 1)}) at {lat['rate']['median']:.0f}/s",
                _verdict(tp["targets"]["p99_at_50pct_met"]),
            ]
        )
    elif tp is not None:
        rows.append(
            [
                "Throughput and latency",
                "see docs/performance.md",
                tp.get("status", "?") + ": " + tp.get("reason", ""),
                "—",
            ]
        )
    fi = get("fanin")
    if fi is not None and fi.get("status") == "ok":
        s = fi["summary"]
        rows.append(
            [
                "Inbound fan-in ≥ 50 % of baseline event rate",
                "≥ 0.50",
                f"{_sp(s['bridge_messages_per_s'], 0, ' msgs/s')} = {_sp(s['ratio_to_baseline'], 2)} × baseline",
                _verdict(fi["targets"]["met"]),
            ]
        )
    elif fi is not None:
        rows.append(["Inbound fan-in", "≥ 0.50", fi.get("status", "?") + ": " + fi.get("reason", ""), "—"])
    cap = get("capacity")
    if cap is not None and cap.get("status") == "ok":
        top = str(cap["targets"]["sessions"])
        d = cap["summary"][top]
        rows.append(
            [
                f"Capacity: {int(top):,} sessions, RSS per session",
                "≤ 30 KiB",
                _sp(d["rss_kib_per_session"], 1, " KiB") + f" (all open in {_sp(d['open_all_s'], 1, ' s')})",
                _verdict(cap["targets"]["rss_met"]),
            ]
        )
        rows.append(
            [
                f"Capacity: {int(top):,} sessions, idle CPU ({_keepalives(cap)})",
                "< 10 % of a core",
                _sp(d["idle_cpu_pct_bridge"], 2, " %"),
                _verdict(cap["targets"]["idle_cpu_met"]),
            ]
        )
    elif cap is not None:
        rows.append(["Capacity", "≤ 30 KiB, < 10 %", cap.get("status", "?") + ": " + cap.get("reason", ""), "—"])
    at_defaults = load_result("capacity-defaults")  # a run of its own: a 240 s window does not fit the suite
    if at_defaults is not None and at_defaults.get("status") == "ok":
        top = str(at_defaults["targets"]["sessions"])
        rows.append(
            [
                f"Capacity: {int(top):,} sessions, idle CPU ({_keepalives(at_defaults)}; "
                f"run {at_defaults['run_id']}, {at_defaults['machine']['date_utc']})",
                "< 10 % of a core",
                _sp(at_defaults["summary"][top]["idle_cpu_pct_bridge"], 2, " %"),
                _verdict(at_defaults["targets"]["idle_cpu_met"]),
            ]
        )
    rec = get("recovery")
    if rec is not None and rec.get("status") == "ok":
        rows.append(
            [
                "Recovery: 1,000 sessions resumed + backfilled",
                "≤ 30 s",
                _sp(rec["summary"]["all_resumed_and_backfilled_s"], 1, " s"),
                _verdict(rec["targets"]["met"]),
            ]
        )
    elif rec is not None:
        rows.append(["Recovery", "≤ 30 s", rec.get("status", "?") + ": " + rec.get("reason", ""), "—"])
    return rows


def _keepalives(capacity: dict[str, Any]) -> str:
    """The keepalive intervals a capacity run used, and whether they are the bridge's defaults."""
    options = capacity["options"]
    both = options.get("keepalive_interval_s")
    ping, echo = options.get("ping_interval_s", both), options.get("echo_interval_s", both)
    fields = Settings.model_fields
    defaults = (fields["ws_ping_interval_s"].default, fields["echo_interval_s"].default)
    note = (
        "the defaults"
        if (ping, echo) == defaults
        else f"an upper bound for the defaults {defaults[0]:g} s / {defaults[1]:g} s"
    )
    return f"ping every {ping:g} s, echo every {echo:g} s: {note}"


def machine_line(run_id: str | None = None) -> str:
    """One line naming the machine and date of the results."""
    for name in ("throughput", "capacity", "fanin", "recovery"):
        doc = load_result(name)
        if doc is not None and (run_id is None or doc.get("run_id") == run_id):
            m = doc["machine"]
            return (
                f"{m['date_utc']}; {m['nproc']} × {m['cpu_model']}; {m['mem_total_mib']:,} MiB; "
                f"Python {m['python']}; {m['event_loop']} (uvloop installed: {m['uvloop_installed']}); "
                f"run {doc['run_id']}"
            )
    return "machine: see bench/results/*.json"


def summary_table(run_id: str | None = None) -> str:
    """The markdown table of targets and figures (median [min–max])."""
    return render_table(["target", "goal", "measured, median [min–max]", "verdict"], _rows(run_id))


def details() -> str:
    """Every benchmark's own table from its latest results (each names its run and date)."""
    import importlib

    parts = []
    for name in ("baseline_pipeline", "throughput", "fanin", "recovery", "capacity"):
        doc = load_result(name)
        if doc is None:
            continue
        machine = doc.get("machine", {})
        when = machine.get("date_utc") or machine.get("date", "?")
        parts.append(f"### {name} (run {doc.get('run_id', '?')}, {when})")
        if name == "baseline_pipeline":
            rows = [[k, _sp(v, 1)] for k, v in doc.get("summary", {}).items()]
            parts.append(render_table(["baseline pipeline (1,000 sockets)", "median [min–max]"], rows))
        else:
            parts.append(importlib.import_module(f"bench.{name}").render(doc))
    return "\n\n".join(parts)


def main() -> None:
    """``python -m bench.report [--details]``: print the summary (and each table) of the latest results."""
    import sys

    print(machine_line())
    print(summary_table())
    if "--details" in sys.argv[1:]:
        print()
        print(details())


if __name__ == "__main__":
    main()
