"""The client distribution stands alone: it imports only pydantic and aio-pika, and the daemon pins it."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

import bridge
import genesys_bridge_client

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "client"
SOURCES = sorted((CLIENT / "src" / "genesys_bridge_client").rglob("*.py"))
ALLOWED = {"pydantic", "pydantic_core", "aio_pika", "genesys_bridge_client"}


def _top_level_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__"}


def _project(path: Path) -> dict[str, object]:
    with path.open("rb") as fh:
        project: dict[str, object] = tomllib.load(fh)["project"]
    return project


def test_the_client_imports_pydantic_and_aio_pika_only() -> None:
    assert SOURCES
    for path in SOURCES:
        extra = _top_level_imports(path) - ALLOWED
        assert not extra, f"{path.relative_to(ROOT)} imports {sorted(extra)}"


def test_the_contract_is_pure() -> None:
    """The models and the codec need no broker client: they also serve the daemon and schema tools."""
    for path in (CLIENT / "src" / "genesys_bridge_client" / "contract").rglob("*.py"):
        assert "aio_pika" not in _top_level_imports(path), path.relative_to(ROOT)


def test_the_client_declares_what_it_imports_and_the_daemon_pins_it() -> None:
    client = _project(CLIENT / "pyproject.toml")
    declared = {Requirement(r).name for r in client["dependencies"]}  # type: ignore[attr-defined]
    assert declared == {"pydantic", "aio-pika"}
    assert client["version"] == genesys_bridge_client.__version__
    daemon = _project(ROOT / "pyproject.toml")
    pins = [Requirement(r) for r in daemon["dependencies"] if r.startswith("genesys-bridge-client")]  # type: ignore[attr-defined]
    assert [str(p.specifier) for p in pins] == [f"=={client['version']}"]
    assert daemon["version"] == bridge.__version__ == client["version"], "released together, at one version"
