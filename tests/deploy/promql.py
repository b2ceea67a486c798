"""Just enough PromQL reading to list the metric names an expression uses, and the names an exposition offers.

Not a PromQL parser: it removes what cannot be a metric name (strings, label matchers, ranges, grouping
clauses, function calls, keywords, numbers) and keeps the identifiers left over. That is exact for the
expressions in ``deploy/`` and errs on the side of reporting too much, which makes the test stricter.
"""

from __future__ import annotations

import re

__all__ = ["exposed_series_names", "label_values_metric", "metric_names"]

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
_VARIABLES = re.compile(r"\$\{?\w+\}?")
_IDENT = re.compile(r"(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{[^}]*\})?\s*,")

# A counter named `x_total` in the text format, and the series a histogram or summary expands into.
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


def metric_names(expr: str) -> set[str]:
    """Metric names used by a PromQL expression (Grafana variables such as ``$__rate_interval`` allowed)."""
    text = _STRINGS.sub(" ", expr)
    text = _VARIABLES.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("("):
            continue  # a function or aggregation
        if match.group().lower() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def label_values_metric(query: str) -> set[str]:
    """The metric of a Grafana ``label_values(metric{...}, label)`` variable query."""
    return set(_LABEL_VALUES.findall(query))


def exposed_series_names(exposition: str) -> set[str]:
    """Every series name a Prometheus text exposition offers, from its samples and its ``# TYPE`` lines.

    A labelled metric with no samples yet still has its ``# TYPE`` line, so the metric counts as exported
    even before the first session or command.
    """
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names |= {name + suffix for suffix in _SUFFIXES.get(kind, ("",))}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names
