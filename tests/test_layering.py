"""Import layering of ``bridge/``, checked statically with :mod:`ast`.

The rules keep I/O at the edges, so the protocol core and the contract stay pure and testable alone:

* only ``bridge/amqp/`` imports ``aio_pika`` / ``aiormq``;
* only ``bridge/genesys/rest.py`` imports ``httpx``;
* the pure layers (``bridge/contract/*``, ``bridge/genesys/*`` apart from its two I/O adapters,
  ``bridge/session/state.py``) import no asyncio networking, directly or through other ``bridge``
  modules, and never ``bridge.amqp`` or ``bridge.app``;
* ``bridge/genesys/*`` and ``bridge/contract/*`` never import ``bridge.amqp`` or ``bridge.app``.

Every ``import`` statement is counted, including ones inside functions and ``TYPE_CHECKING`` blocks:
a lazy import still couples the layers.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BRIDGE = ROOT / "bridge"

NETWORKING = ("websockets", "aio_pika", "aiormq", "aiohttp", "httpx")
AMQP_LIBS = ("aio_pika", "aiormq")
FORBIDDEN_INTERNAL = ("bridge.amqp", "bridge.app")

# The Genesys package holds two sanctioned I/O adapters: the WebSocket connector
# and the REST client. Each may import exactly its own library and nothing else networked.
GENESYS_ADAPTERS = {
    "bridge/genesys/connector.py": "websockets",
    "bridge/genesys/rest.py": "httpx",
}


@dataclass(frozen=True)
class Module:
    """One module under ``bridge/``: its repo path, dotted name and absolute imports."""

    path: str
    name: str
    imports: frozenset[str]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str) -> frozenset[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # Resolve "from . import x" / "from ..y import z" against this module's package.
                package = name.split(".") if is_package else name.split(".")[:-1]
                base = package[: len(package) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            found.add(stem)
            # "from bridge import app" imports bridge.app.
            found.update(f"{stem}.{alias.name}" for alias in node.names if alias.name != "*")
    return frozenset(found)


@cache
def modules() -> dict[str, Module]:
    """All modules under ``bridge/``, keyed by repo-relative path."""
    result: dict[str, Module] = {}
    for path in sorted(BRIDGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        name = _module_name(path)
        result[rel] = Module(rel, name, _imports(path, name))
    return result


@cache
def _by_name() -> dict[str, Module]:
    return {module.name: module for module in modules().values()}


def _matches(imported: str, prefixes: tuple[str, ...]) -> bool:
    return any(imported == p or imported.startswith(p + ".") for p in prefixes)


def _direct(path: str, prefixes: tuple[str, ...]) -> list[str]:
    return sorted(i for i in modules()[path].imports if _matches(i, prefixes))


def _internal_closure(path: str) -> set[str]:
    """Every ``bridge`` module imported by ``path``, transitively, with the packages on the way."""
    by_name = _by_name()
    seen: set[str] = set()
    stack = [modules()[path].name]
    while stack:
        name = stack.pop()
        # Importing a.b.c runs a/__init__, a/b/__init__ and a/b/c.
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in by_name and prefix not in seen:
                seen.add(prefix)
                stack.extend(n for n in by_name[prefix].imports if n in by_name or n.startswith("bridge"))
    return seen


def _transitive(path: str, prefixes: tuple[str, ...]) -> list[str]:
    """``(module, import)`` pairs reached from ``path`` through ``bridge`` modules."""
    by_name = _by_name()
    hits: list[str] = []
    for name in sorted(_internal_closure(path)):
        hits.extend(f"{by_name[name].path}: {i}" for i in sorted(by_name[name].imports) if _matches(i, prefixes))
    return hits


def _under(*prefixes: str) -> list[str]:
    return [p for p in modules() if p.startswith(prefixes)]


PURE_LAYERS = sorted(
    {
        *(p for p in _under("bridge/contract/")),
        *(p for p in _under("bridge/genesys/") if p not in GENESYS_ADAPTERS),
        "bridge/session/state.py",
        "bridge/genesys/protocol.py",
    }
)


def test_modules_found() -> None:
    """The scan sees the tree (guards against a path mistake that would make every test vacuous)."""
    assert "bridge/genesys/protocol.py" in modules()
    assert "bridge/session/state.py" in modules()
    assert len(_under("bridge/amqp/")) >= 3


@pytest.mark.parametrize("path", [p for p in modules() if not p.startswith("bridge/amqp/")])
def test_amqp_client_only_under_amqp(path: str) -> None:
    assert _direct(path, AMQP_LIBS) == []


@pytest.mark.parametrize("path", [p for p in modules() if p != "bridge/genesys/rest.py"])
def test_httpx_only_in_rest(path: str) -> None:
    assert _direct(path, ("httpx",)) == []


@pytest.mark.parametrize("path", _under("bridge/genesys/", "bridge/contract/"))
def test_genesys_and_contract_never_import_amqp_or_app(path: str) -> None:
    assert _direct(path, FORBIDDEN_INTERNAL) == []
    assert _transitive(path, FORBIDDEN_INTERNAL) == []


@pytest.mark.parametrize("path", PURE_LAYERS)
def test_pure_layers_import_no_networking(path: str) -> None:
    assert _direct(path, NETWORKING + FORBIDDEN_INTERNAL) == []
    assert _transitive(path, NETWORKING + FORBIDDEN_INTERNAL) == []


@pytest.mark.parametrize("path", sorted(GENESYS_ADAPTERS))
def test_genesys_adapters_import_only_their_own_library(path: str) -> None:
    own = GENESYS_ADAPTERS[path]
    others = tuple(lib for lib in NETWORKING if lib != own)
    assert _direct(path, others) == []
    assert _transitive(path, others + FORBIDDEN_INTERNAL) == []
