"""The install commands the documents show work with the chart as it is.

Each ``helm install`` in a ``sh`` block of README.md, docs/deploy.md and the chart's own README is parsed
the way Helm parses it (``-f`` files, then ``--set`` expressions in order, through the Helm SDK's own
``--set`` parser), checked against ``values.schema.json`` and rendered; every manifest must be valid
Kubernetes. A ``-f FILE`` is looked up as the ``yaml`` block of the same document that starts with
``# FILE``. When the values name an existing Secret, the document must create that Secret (``kubectl
create secret generic``) in the same namespace with every key the chart reads from it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest

from tests.deploy.chart import CHART_DIR, KUBE_VERSIONS, load_chart, render

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ("README.md", "docs/deploy.md", "helm/genesys-bridge/README.md")
#: Secret keys the daemon cannot start without (``secret.keys``); the retired keys are optional.
REQUIRED_SECRET_KEYS = ("amqpUrl", "stateKey")


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", text, re.S | re.M)


def _commands(text: str, program: str) -> list[list[str]]:
    """Every ``program`` command line of the document's ``sh`` blocks, split as a shell would."""
    found: list[list[str]] = []
    for block in _blocks(text, "sh"):
        joined = re.sub(r"\\\n", " ", block)
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == [program]:
                found.append(words)
    return found


@dataclass
class HelmInstall:
    """One ``helm install NAME CHART [flags]`` as Helm would read it."""

    document: str
    release: str
    chart: str
    namespace: str = "default"
    files: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)


def _parse_helm_install(document: str, words: list[str]) -> HelmInstall:
    assert words[:2] == ["helm", "install"], words
    positional: list[str] = []
    namespace = "default"
    files: list[str] = []
    sets: list[str] = []
    rest = iter(words[2:])
    for word in rest:
        flag, eq, inline = word.partition("=")
        if flag in ("-n", "--namespace", "-f", "--values", "--set"):
            value = inline if eq else next(rest)
            if flag in ("-n", "--namespace"):
                namespace = value
            elif flag in ("-f", "--values"):
                files.append(value)
            else:
                sets.append(value)
        elif word.startswith("-"):
            pytest.fail(f"{document}: flag {word!r} is not understood by this test; teach it")
        else:
            positional.append(word)
    assert len(positional) == 2, f"{document}: expected `helm install NAME CHART`, got {words}"
    return HelmInstall(document, positional[0], positional[1], namespace, files, sets)


def _secrets_created(text: str) -> dict[tuple[str, str], set[str]]:
    """``(namespace, name)`` -> literal keys, for each ``kubectl create secret generic`` of the document."""
    found: dict[tuple[str, str], set[str]] = {}
    for words in _commands(text, "kubectl"):
        namespace = "default"
        if "-n" in words:
            namespace = words[words.index("-n") + 1]
            del words[words.index("-n") : words.index("-n") + 2]
        if words[1:4] != ["create", "secret", "generic"]:
            continue
        keys = {w.split("=", 2)[1] for w in words if w.startswith("--from-literal=")}
        found[(namespace, words[4])] = keys
    return found


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _values(install: HelmInstall, text: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in install.files:
        blocks = [b for b in _blocks(text, "yaml") if b.lstrip().startswith(f"# {name}\n")]
        assert len(blocks) == 1, f"{install.document}: no yaml block starting with `# {name}` for `-f {name}`"
        values = _merge(values, helm_python.values_from_yaml(blocks[0]))
    for expression in install.sets:
        values = _merge(values, helm_python.parse_set_string(expression))
    return values


def _installs() -> list[tuple[str, list[str]]]:
    """``(document, words)`` of every ``helm install`` shown; parsed in the test, so a bad line fails there."""
    found: list[tuple[str, list[str]]] = []
    for document in DOCUMENTS:
        text = (ROOT / document).read_text(encoding="utf-8")
        found += [(document, words) for words in _commands(text, "helm") if words[1] == "install"]
    return found


INSTALLS = _installs()


def test_every_document_shows_an_install() -> None:
    assert {document for document, _ in INSTALLS} == set(DOCUMENTS)


@pytest.mark.parametrize(("document", "words"), INSTALLS, ids=[f"{d}:{i}" for i, (d, _) in enumerate(INSTALLS)])
def test_the_documented_install_renders(document: str, words: list[str]) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    install = _parse_helm_install(document, words)
    chart_dir = (ROOT / install.chart).resolve()
    assert chart_dir == CHART_DIR, f"{install.document}: the chart path {install.chart!r} is not the chart"
    values = _values(install, text)
    with load_chart() as chart:
        chart.validate_schema(chart.merge_values(values))  # what `helm install` refuses, this refuses
        rendered = render(values, chart=chart, name=install.release, namespace=install.namespace)
    for manifest in rendered.manifests:
        kubernetes_validate.validate(manifest, KUBE_VERSIONS[-1], strict=True)
    if "image" in values and "repository" in values["image"]:
        assert rendered.container["image"].startswith(values["image"]["repository"] + ":")

    existing = values.get("secret", {}).get("existingSecret")
    if not existing:
        return
    assert not rendered.kind("Secret"), "an existing Secret is named, so the chart must make none"
    created = _secrets_created(text)
    assert (install.namespace, existing) in created, (
        f"{install.document}: installs with secret.existingSecret={existing!r} in namespace "
        f"{install.namespace!r} but creates no such Secret there (it creates {sorted(created)})"
    )
    env = rendered.container["env"]
    refs = {e["valueFrom"]["secretKeyRef"]["key"] for e in env if "secretKeyRef" in e.get("valueFrom", {})}
    with load_chart() as chart:
        keys = chart.merge_values(values)["secret"]["keys"]
    needed = {keys[k] for k in REQUIRED_SECRET_KEYS}
    assert needed <= refs
    missing = needed - created[(install.namespace, existing)]
    assert not missing, f"{install.document}: the Secret it creates lacks {sorted(missing)}"
