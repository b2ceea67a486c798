"""The Grafana dashboard and the Prometheus rules use only metrics the daemon really exports.

`metrics_exposition` starts the whole daemon in-process (``bridge.app.running_bridge``, against the local
RabbitMQ with names of its own) and scrapes its ``/metrics`` over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bridge.amqp.tools import delete_deployment
from bridge.app import running_bridge
from bridge.config import Settings
from tests.deploy.promql import exposed_series_names, label_values_metric, metric_names

ROOT = Path(__file__).resolve().parents[2]
# One source each: the chart loads these files, and deploy/ links to them for plain Prometheus and Grafana.
DASHBOARD = ROOT / "helm" / "genesys-bridge" / "files" / "grafana-dashboard.json"
RULES = ROOT / "helm" / "genesys-bridge" / "files" / "prometheus-rules.yaml"
RUNBOOK = ROOT / "docs" / "runbook.md"

# Series Prometheus records itself for every target, not the daemon.
PROMETHEUS_SYNTHETIC = {"up"}


async def _scrape_metrics_endpoint(amqp_url: str) -> str:
    prefix = f"t.deploy-metrics.{uuid.uuid4().hex[:8]}"
    settings = Settings.load(
        amqp_url=amqp_url,
        command_exchange=f"{prefix}.commands",
        intake_queue=f"{prefix}.intake",
        event_exchange=f"{prefix}.events",
        dead_letter_queue=f"{prefix}.dlq",
        durable_sessions=False,
        http_host="127.0.0.1",
        http_port=0,
    )
    try:
        async with running_bridge(settings) as bridge, httpx.AsyncClient() as client:
            # Scrape a started bridge (intake consuming, recovery done), so the stop never races the start.
            async with asyncio.timeout(30):
                await bridge.recovered.wait()
            response = await client.get(f"http://127.0.0.1:{bridge.http.port}/metrics")
    finally:
        await delete_deployment(amqp_url, settings)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


@pytest.fixture(scope="module")
def metrics_exposition(amqp_url: str) -> str:
    """The text of a live ``/metrics`` scrape (the 0.0.4 text format, as Prometheus asks for by default).

    The real daemon, started in-process. It runs once per module on its own loop in a worker thread, so it
    leaves the main thread's event loop (pytest-asyncio's business) untouched.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _scrape_metrics_endpoint(amqp_url)).result(timeout=30)


def _walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _walk_panels(panel.get("panels", []))


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in _walk_panels(dashboard["panels"]) for t in p.get("targets", []) if t.get("expr")]


def dashboard_variable_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    names: set[str] = set()
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            names |= label_values_metric(query["query"] if isinstance(query, dict) else query)
    return names


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promql_reader_finds_metric_names() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, type) "
        '(rate(foo_seconds_bucket{job=~"$job", a="b(c)"}[$__rate_interval])))'
        " / on (job) group_left (x) clamp_min(bar_total offset 5m, 1) > bool 2e3 and up == 0"
    )
    assert metric_names(expr) == {"foo_seconds_bucket", "bar_total", "up"}
    assert metric_names("a_total / on (job) group_left b_total") == {"a_total", "b_total"}  # no label list
    assert label_values_metric('label_values(baz_info{job=~"$job"}, instance)') == {"baz_info"}
    exposition = (
        '# HELP a_total x\n# TYPE a_total counter\n# TYPE h histogram\nh_bucket{le="1"} 0\n# TYPE g gauge\ng 1\n'
    )
    assert exposed_series_names(exposition) == {"a_total", "h_bucket", "h_sum", "h_count", "g"}


def test_dashboard_uses_only_exported_metrics(metrics_exposition: str) -> None:
    exported = exposed_series_names(metrics_exposition)
    used = {name for expr in dashboard_expressions() for name in metric_names(expr)} | dashboard_variable_metrics()
    assert used, "no metric found in the dashboard"
    unknown = used - exported
    assert not unknown, f"dashboard uses metrics the daemon does not export: {sorted(unknown)}"


def test_rules_use_only_exported_metrics(metrics_exposition: str) -> None:
    exported = exposed_series_names(metrics_exposition) | PROMETHEUS_SYNTHETIC
    used = {name for rule in rules() for name in metric_names(rule["expr"])}
    assert used
    unknown = used - exported
    assert not unknown, f"alert rules use metrics the daemon does not export: {sorted(unknown)}"


def test_the_session_limit_is_exported_from_the_settings(metrics_exposition: str) -> None:
    """Capacity alerts divide by it, so it is there from the first scrape, before any session."""
    assert f"genesys_bridge_session_limit {float(Settings().max_sessions)}" in metrics_exposition.splitlines()


def test_dashboard_shows_every_bridge_metric(metrics_exposition: str) -> None:
    """A metric added to bridge/observability/metrics.py also gets a panel in the dashboard."""
    families = {
        line.split()[2]
        for line in metrics_exposition.splitlines()
        if line.startswith("# TYPE genesys_bridge_") and not line.split()[2].endswith("_created")
    }
    used = {name for expr in dashboard_expressions() for name in metric_names(expr)}
    shown = {f for f in families if any(u == f or u.startswith(f + "_") for u in used)}
    assert families - shown == set(), f"no dashboard panel for: {sorted(families - shown)}"


def test_dashboard_covers_what_operators_need() -> None:
    """Sessions by state, RED for commands, confirm latency, reconnects, errors by code, scale-out (who owns
    what, failovers, routing), process health."""
    exprs = "\n".join(dashboard_expressions())
    for needle in (
        "sum by (state) (genesys_bridge_sessions",
        "genesys_bridge_commands_total",
        "genesys_bridge_command_duration_seconds_bucket",
        "genesys_bridge_publish_confirm_seconds_bucket",
        "genesys_bridge_reconnects_total",
        "sum by (code) (rate(genesys_bridge_genesys_errors_total",
        "genesys_bridge_rate_limit_delay_seconds_bucket",
        "genesys_bridge_rate_limit_drops_total",
        "genesys_bridge_session_limit",
        "sum by (status, reason) (rate(genesys_bridge_commands_total",
        "genesys_bridge_backfilled_messages_total",
        "genesys_bridge_duplicates_dropped_total",
        "genesys_bridge_inbox_depth",
        "sum by (instance) (genesys_bridge_partitions_owned",
        "sum by (change) (rate(genesys_bridge_partition_ownership_changes_total",
        "sum by (direction) (rate(genesys_bridge_sessions_moved_total",
        "genesys_bridge_failover_duration_seconds_bucket",
        "genesys_bridge_router_lag_seconds",
        "genesys_bridge_router_backlog",
        "genesys_bridge_replicas",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert needle in exprs, needle


def test_dashboard_is_importable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    panels = list(_walk_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
            assert all(t["refId"] for t in panel["targets"])
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "job", "instance"} <= variables


def test_every_dashboard_query_is_scoped_to_the_chosen_namespace() -> None:
    """One Grafana serves many namespaces; a panel without the filter would mix every bridge's series."""
    for expr in dashboard_expressions():
        assert 'namespace=~"$namespace"' in expr, expr
    dashboard = json.loads(DASHBOARD.read_text())
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query" and variable["name"] != "namespace":
            assert 'namespace=~"$namespace"' in variable["definition"], variable["name"]


# --- rule file structure (what `promtool check rules` checks first) -------------------------------------

_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def test_rules_file_is_a_valid_prometheus_rule_file() -> None:
    doc = yaml.safe_load(RULES.read_text())
    assert set(doc) == {"groups"}
    group_names = [g["name"] for g in doc["groups"]]
    assert len(group_names) == len(set(group_names)), "group names must be unique"
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "limit", "rules", "query_offset", "labels"}
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), rule
            assert set(rule) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
            assert isinstance(rule["expr"], str)
            assert rule["expr"].strip()
            assert _balanced(rule["expr"]), rule["expr"]
            if "alert" in rule:
                assert _NAME.match(rule["alert"])
                assert _DURATION.match(rule.get("for", "0s")), rule.get("for")
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}
                assert rule["annotations"]["summary"]
                assert rule["annotations"]["description"]
            for mapping in (rule.get("labels", {}), rule.get("annotations", {})):
                assert all(_NAME.match(k) and isinstance(v, str) for k, v in mapping.items())


def _balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in re.sub(r'"(?:[^"\\]|\\.)*"', "", expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def test_rules_cover_the_failure_modes() -> None:
    # Every rule, not one per alert name: an alert may have several rules (GenesysBridgeRouterStalled).
    joined = "\n".join(rule["expr"] for rule in rules())
    for needle in (
        "up{",  # down
        "genesys_bridge_ready",  # not ready
        "genesys_bridge_session_failures_total",
        'status="failed"',  # the bridge or Genesys could not do it
        'status="rejected"',  # the caller sent what the contract refuses
        "absent(genesys_bridge_build_info)",  # nothing scraped at all
        "genesys_bridge_session_limit",  # capacity
        "genesys_bridge_publish_confirm_seconds_bucket",
        'genesys_bridge_genesys_errors_total{code=~"429|4029"}',
        "genesys_bridge_reconnects_total",
        "genesys_bridge_dead_lettered_total",
        "genesys_bridge_partitions_owned",  # a partition nobody owns: its sessions are paused
        "genesys_bridge_router_active",  # nobody routes the intake queue
        "genesys_bridge_router_routed_total",  # a router that moves nothing while commands wait
    ):
        assert needle in joined, needle


def test_failed_and_rejected_alert_apart_and_by_reason() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in rules()}
    failing, rejected = exprs["GenesysBridgeCommandsFailing"], exprs["GenesysBridgeCommandsRejected"]
    assert 'status="failed"' in failing
    assert "rejected" not in failing
    assert 'status="rejected"' in rejected
    assert "failed" not in rejected
    for expr in (failing, rejected):
        assert "sum by (namespace, job, reason)" in expr


@pytest.mark.parametrize("name", ["prometheus-rules.yaml", "grafana-dashboard.json"])
def test_deploy_files_are_the_chart_files(name: str) -> None:
    """deploy/ links to the chart's files: one source for plain installs and the chart."""
    linked = ROOT / "deploy" / name
    assert linked.is_symlink()
    assert linked.resolve() == (ROOT / "helm" / "genesys-bridge" / "files" / name).resolve()


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_every_alert_has_a_runbook_section() -> None:
    anchors = _anchors(RUNBOOK.read_text())
    for rule in rules():
        if "alert" not in rule:
            continue
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/runbook.md#{rule['alert'].lower()}", rule["alert"]
        assert url.split("#")[1] in anchors, f"docs/runbook.md has no section {rule['alert']}"
        section = RUNBOOK.read_text().split(f"## {rule['alert']}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("What it means", "What users see", "Diagnose", "What to do"):
            assert f"**{part}**" in section, f"{rule['alert']}: no {part!r}"
