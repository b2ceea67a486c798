"""Render the Helm chart offline with the Helm SDK (``helm_python``) and hand back parsed manifests.

``helm_python.Chart.render`` takes no capabilities, but the library's render options accept
``api_versions`` and ``kube_version`` (the same as ``helm template --api-versions --kube-version``).
:func:`render` passes them through the SDK's native call so tests can render with a CRD API present,
e.g. prometheus-operator's ``monitoring.coreos.com/v1``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from helm_python import Chart, _native

__all__ = ["CHART_DIR", "KUBE_VERSIONS", "NAMESPACE", "RELEASE", "Rendered", "load_chart", "render"]

CHART_DIR = Path(__file__).resolve().parents[2] / "helm" / "genesys-bridge"
# Oldest the chart supports (Chart.yaml kubeVersion) and newer ones kubernetes-validate ships schemas for.
KUBE_VERSIONS = ("1.27.0", "1.31.0", "1.35.0")
RELEASE = "gb"
NAMESPACE = "messaging"


def load_chart() -> Chart:
    return Chart.load(CHART_DIR)


@dataclass(frozen=True)
class Rendered:
    """One render: the manifests as dicts, plus the NOTES.txt text."""

    manifests: list[dict[str, Any]]
    notes: str

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.manifests if m["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.kind(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.deployment["spec"]["template"]["spec"]
        return spec

    @property
    def settings_configmap(self) -> dict[str, Any]:
        """The ConfigMap of daemon settings (the container's first envFrom), not e.g. the dashboard's."""
        name = self.container["envFrom"][0]["configMapRef"]["name"]
        (found,) = [m for m in self.kind("ConfigMap") if m["metadata"]["name"] == name]
        return found

    @property
    def container(self) -> dict[str, Any]:
        containers = self.pod_spec["containers"]
        assert len(containers) == 1
        container: dict[str, Any] = containers[0]
        return container


def render(
    values: dict[str, Any] | None = None,
    *,
    api_versions: tuple[str, ...] = (),
    kube_version: str | None = None,
    chart: Chart | None = None,
    name: str = RELEASE,
    namespace: str = NAMESPACE,
) -> Rendered:
    """Render the chart like ``helm template gb helm/genesys-bridge -n messaging``."""
    opts: dict[str, Any] = {"name": name, "namespace": namespace, "is_install": True}
    if api_versions:
        opts["api_versions"] = list(api_versions)
    if kube_version:
        opts["kube_version"] = f"v{kube_version}"
    owned = chart is None
    chart = chart or load_chart()
    try:
        raw = _native.call_string(
            "helm_render", chart._raw(), None if values is None else json.dumps(values), json.dumps(opts)
        )
    finally:
        if owned:
            chart.close()
    files: dict[str, str] = json.loads(raw)
    manifests: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        manifests.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Rendered(manifests=manifests, notes=notes)
