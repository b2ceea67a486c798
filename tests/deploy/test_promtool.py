"""The alert rules pass Prometheus' own checker and their unit tests (``promtool``).

``promtool check rules`` parses every expression with Prometheus' PromQL parser and checks the rule file's
structure; ``promtool test rules`` runs tests/deploy/prometheus-rules.test.yaml (series in, alerts out).
``make promtool`` installs it; without it these two tests skip, and test_monitoring's structural check of
the rule file still runs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "helm" / "genesys-bridge" / "files" / "prometheus-rules.yaml"
RULE_TESTS = Path(__file__).resolve().parent / "prometheus-rules.test.yaml"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (make promtool)")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=30, check=False)


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
