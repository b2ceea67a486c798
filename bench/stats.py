"""Pure statistics, table and metrics-page helpers: no I/O, no clocks, so the smoke test can run them.

Every figure of the suite is a :class:`Spread` (median of the repetitions, with min and max); latencies
are percentiles of the raw samples of one repetition (:func:`percentile`, nearest-rank).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Spread", "percentile", "ratio", "render_table", "shown", "spread"]


@dataclass(frozen=True, slots=True)
class Spread:
    """The median of some repetitions with their min and max (``n`` = how many)."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Spread:
        """The spread a results file holds as :meth:`as_json` wrote it."""
        return cls(doc["median"], doc["min"], doc["max"], doc["n"])

    def as_json(self) -> dict[str, float | int]:
        """``{"median", "min", "max", "n"}`` for the results files."""
        return {"median": self.median, "min": self.low, "max": self.high, "n": self.n}

    def fmt(self, digits: int = 0, unit: str = "") -> str:
        """``"1234 [1100–1300]"`` (median, then min–max), with an optional unit after the median."""
        f = f"{{:,.{digits}f}}"
        return f"{f.format(self.median)}{unit} [{f.format(self.low)}–{f.format(self.high)}]"


def shown(doc: Mapping[str, Any], digits: int = 0) -> str:
    """A spread from a results file, formatted as :meth:`Spread.fmt` does."""
    return Spread.of(doc).fmt(digits)


def spread(values: Iterable[float]) -> Spread:
    """Median, min and max of ``values``. Raises ``ValueError`` when there are none."""
    data = [float(v) for v in values]
    if not data:
        raise ValueError("spread() of no values")
    return Spread(statistics.median(data), min(data), max(data), len(data))


def percentile(samples: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile ``pct`` (0–100] of ``samples`` (need not be sorted).

    Nearest-rank returns an observed sample, never an interpolation, so p100 is the max and a p99 of
    100 samples is the 99th smallest. ``nan`` for no samples.
    """
    if not 0 < pct <= 100:
        raise ValueError("pct must be in (0, 100]")
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = math.ceil(pct / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def ratio(numerator: Spread, denominator: Spread) -> Spread:
    """Ratio of two spreads: median/median, and the extreme combinations as its range (pessimistic)."""
    if denominator.median == 0 or denominator.low == 0 or denominator.high == 0:
        return Spread(math.nan, math.nan, math.nan, min(numerator.n, denominator.n))
    return Spread(
        numerator.median / denominator.median,
        numerator.low / denominator.high,
        numerator.high / denominator.low,
        min(numerator.n, denominator.n),
    )


def render_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (also readable on a terminal)."""
    cells = [[str(h) for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def against(samples: Mapping[str, Sequence[float]], reference: str, unit: str) -> list[str]:
    """One line per way of a micro-benchmark: its median [min–max] in ``unit`` and its ratio to the median of
    ``reference`` (one of the ways)."""
    base = spread(samples[reference]).median
    width = max(map(len, samples))
    return [
        f"{way:{width}} {spread(values).fmt(1)} {unit}   {spread(values).median / base:.2f}x {reference}"
        for way, values in samples.items()
    ]


def metric_sum(text: str, name: str, labels: str = "") -> float:
    """The sum of every sample of metric ``name`` in a Prometheus text page (0.0 if none), over the series
    whose labels contain ``labels`` (e.g. ``'type="message.send"'``; all series when empty)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            series, value = line.rsplit(" ", 1)
            if labels in series:
                total += float(value)
    return total
