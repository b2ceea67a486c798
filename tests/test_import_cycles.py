"""No import cycles between the modules of ``bridge/`` (the simulator's included), checked statically with
:mod:`ast`.

An edge ``a → b`` is any ``import`` statement in ``a`` naming ``b``: at the top level, inside a function,
or under ``if TYPE_CHECKING:``. A type-only import does not run, but it still says that ``a`` needs to
know ``b``; two modules that need each other's types are one concept split in two, or are missing the
small module both should import. ``from package import name`` is an edge to ``package.name`` when that is
a module, else to ``package`` (its ``__init__``). Merely being inside a package is no edge to its
``__init__``: Python runs it first, but a package that re-exports its submodules would otherwise form a
cycle with each of them, which says nothing about the design.

A cycle fails the test with its modules and the edges that close it. :data:`KNOWN_CYCLES` lists the
cycles that are allowed for now; each is to be broken, and the test fails once one is gone, so that the
list only shrinks.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BRIDGE = ROOT / "bridge"

#: Cycles allowed for now, each the set of modules of one strongly connected component. To be broken.
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def import_graph() -> dict[str, frozenset[str]]:
    """Every module under ``bridge/`` → the ``bridge`` modules it imports (see the module docstring)."""
    paths = {_module_name(path): path for path in sorted(BRIDGE.rglob("*.py"))}
    graph: dict[str, frozenset[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    stem = ".".join([*base, node.module] if node.module else base)
                else:
                    stem = node.module or ""
                for alias in node.names:
                    submodule = f"{stem}.{alias.name}"
                    targets.add(submodule if submodule in paths else stem)
        edges = set()
        for target in targets:
            # "import bridge.a.b" may name a module's attribute path; keep the longest module prefix.
            while target and target not in paths:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = frozenset(edges)
    return graph


def import_cycles(graph: dict[str, frozenset[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def describe(component: frozenset[str], graph: dict[str, frozenset[str]]) -> str:
    """The component's modules and the imports between them, one module a line."""
    lines = [f"cycle of {len(component)} modules:"]
    for module in sorted(component):
        inside = sorted(graph[module] & component)
        lines.append(f"  {module} → {', '.join(inside)}")
    return "\n".join(lines)


def test_the_graph_sees_the_tree() -> None:
    """Guards against a path mistake that would make the cycle check vacuous."""
    graph = import_graph()
    assert "bridge.genesys.protocol" in graph["bridge.session.link"]
    assert "bridge.simulator.engine" in graph["bridge.simulator.handlers"]
    assert "bridge.genesys.events" in graph["bridge.genesys.protocol"]


def test_a_cycle_is_found_and_named() -> None:
    graph = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    (cycle,) = import_cycles(graph)
    assert cycle == {"a", "b", "c"}
    assert describe(cycle, graph).splitlines() == ["cycle of 3 modules:", "  a → b", "  b → c", "  c → a"]


def test_no_import_cycles_in_bridge() -> None:
    graph = import_graph()
    new = [c for c in import_cycles(graph) if c not in KNOWN_CYCLES]
    assert not new, "import cycles in bridge/:\n" + "\n".join(describe(c, graph) for c in new)


def test_known_cycles_still_exist() -> None:
    """A broken cycle leaves the allow-list, so that it cannot come back unnoticed."""
    gone = KNOWN_CYCLES - set(import_cycles(import_graph()))
    assert not gone, f"these cycles are broken now; remove them from KNOWN_CYCLES: {sorted(map(sorted, gone))}"
