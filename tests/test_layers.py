"""Layers run one way: the import graph of ``src/peregrine``, read from each module's AST.

Every import counts, wherever it sits (a ``TYPE_CHECKING`` block or a function body): a name a
module needs only to type a parameter is still a dependency on the module that defines it. The
rules are the structure of ``docs/architecture.md``:

* no cycle between the top-level packages (``peregrine.api``, ``peregrine.server``, ...);
* the API stands on the services, never on the frontend process (``peregrine.server``);
* the services know neither the frontend nor the API (they reach agents through ``Fleet``);
* only the composition root (``server/api_server.py``) imports the API into the server.

Two upward imports of the engine are known and named in ``KNOWN_UPWARD``; any other cycle fails.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "peregrine"

#: Modules of ``peregrine.server`` allowed to import ``peregrine.api``: the composition root.
COMPOSITION_ROOT = {"peregrine.server.api_server"}

#: Imports that run against the layers, each with why it is still there. They are lazy (inside
#: a function) and close the engine <-> plugins/artifacts cycle; remove an entry when its import
#: goes (a worker entry point outside the engine, an Engine always given its registry).
KNOWN_UPWARD = {
    ("peregrine.engine.executor", "peregrine.plugin_manager"): "Engine() loads default plugins",
    ("peregrine.engine.worker", "peregrine.artifacts.composition"): "the worker's main()",
    ("peregrine.engine.worker", "peregrine.artifacts.model"): "the worker's main()",
}

#: (importer, imported) package prefixes that must never meet, with why.
FORBIDDEN = [
    ("peregrine.api", "peregrine.server", "the API depends on the services, not the frontend"),
    ("peregrine.services", "peregrine.server", "services reach agents through Fleet"),
    ("peregrine.services", "peregrine.api", "services do not know who calls them"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def imported_names(name: str, path: Path) -> set[str]:
    """Every dotted name ``name`` imports, relative imports resolved, ``from m import x``
    counted as both ``m`` and ``m.x`` (x may be a submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the peregrine modules it imports (``KNOWN_UPWARD`` left out)."""
    modules = all_modules()
    return {
        name: {
            m
            for m in imported_names(name, path)
            if m in modules and m != name and (name, m) not in KNOWN_UPWARD
        }
        for name, path in modules.items()
    }


def top_level(module: str) -> str:
    return ".".join(module.split(".")[:2])


def package_edges(graph: dict[str, set[str]]) -> dict[tuple[str, str], list[str]]:
    """(package, package) → the module imports that make the edge."""
    edges: dict[tuple[str, str], list[str]] = {}
    for module, imports in graph.items():
        for imported in imports:
            pair = (top_level(module), top_level(imported))
            if pair[0] != pair[1]:
                edges.setdefault(pair, []).append(f"{module} -> {imported}")
    return edges


def cycles(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    successors: dict[str, list[str]] = {}
    for a, b in edges:
        successors.setdefault(a, []).append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in successors.get(node, []):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in nodes:
        if node not in index:
            visit(node)
    return found


def test_the_reader_finds_every_kind_of_import(tmp_path: Path) -> None:
    """Relative, ``TYPE_CHECKING`` and function-level imports are all dependencies."""
    source = tmp_path / "routes.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from ..deps import context\n"
        "if TYPE_CHECKING:\n"
        "    from peregrine.server.app import Server\n"
        "def f():\n"
        "    import peregrine.services.hunts\n"
    )
    found = imported_names("peregrine.api.routes.clients", source)
    assert {"peregrine.api.deps", "peregrine.server.app", "peregrine.services.hunts"} <= found
    assert cycles("abc", [("a", "b"), ("b", "c"), ("c", "a")]) == [["a", "b", "c"]]
    assert cycles("abc", [("a", "b"), ("b", "c")]) == []


def test_known_upward_imports_are_still_there() -> None:
    """An entry of ``KNOWN_UPWARD`` whose import has gone must leave the list."""
    modules = all_modules()
    for importer, imported in KNOWN_UPWARD:
        assert imported in imported_names(importer, modules[importer]), (importer, imported)


def test_no_cycle_between_top_level_packages() -> None:
    edges = package_edges(import_graph())
    packages = {p for pair in edges for p in pair}
    found = cycles(sorted(packages), edges)
    detail = [
        f"{a} -> {b}: {', '.join(sorted(edges[a, b])[:3])}"
        for component in found
        for a in component
        for b in component
        if (a, b) in edges
    ]
    assert not found, "import cycles between packages:\n" + "\n".join(detail)


def test_layers_import_only_downwards() -> None:
    graph = import_graph()
    wrong = [
        f"{module} imports {imported}: {why}"
        for importer, forbidden, why in FORBIDDEN
        for module, imports in graph.items()
        if module == importer or module.startswith(importer + ".")
        for imported in sorted(imports)
        if imported == forbidden or imported.startswith(forbidden + ".")
    ]
    assert not wrong, "\n".join(wrong)


def test_only_the_composition_root_imports_the_api() -> None:
    graph = import_graph()
    wrong = [
        f"{module} imports {imported}"
        for module, imports in graph.items()
        if module.startswith("peregrine.server.") and module not in COMPOSITION_ROOT
        for imported in sorted(imports)
        if imported.startswith("peregrine.api")
    ]
    assert not wrong, "the server reaches the API only through its composition root:\n" + "\n".join(
        wrong
    )
