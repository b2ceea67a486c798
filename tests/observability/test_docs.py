"""docs/observability.md names every metric the bridge declares.

Tests here are ``async def`` even when they await nothing: under pytest-asyncio 1.x, looptime's plugin
creates (and leaks) an event loop for a *sync* test, which fails the next async test on ResourceWarning.
"""

from __future__ import annotations

from pathlib import Path

from bridge.observability.metrics import Metrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "observability.md"


async def test_every_metric_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    metrics = Metrics(process_metrics=False)
    missing = []
    for family in metrics.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        if family.type == "info":
            name += "_info"
        if f"`{name}`" not in text:
            missing.append(name)
    assert not missing, f"add these to docs/observability.md: {missing}"
