"""The handlers package is a set of feature routers: no import cycle, every import at the top of its module,
and a feature module imports no other feature, only the shared base (common, registry, onboarding, errors)."""

from __future__ import annotations

import ast
from pathlib import Path

HANDLERS = Path(__file__).resolve().parents[2] / "handlers"
# Modules every feature may import; they import no feature themselves.
BASE = {"common", "registry", "onboarding", "errors"}


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(HANDLERS.glob("*.py")) if p.stem != "__init__"}


def _handler_imports(node: ast.AST) -> set[str]:
    """Names of handlers modules imported anywhere under `node` (`from handlers import x`, `handlers.x`)."""
    found: set[str] = set()
    for item in ast.walk(node):
        if isinstance(item, ast.ImportFrom) and item.module:
            if item.module == "handlers":
                found.update(alias.name for alias in item.names)
            elif item.module.startswith("handlers."):
                found.add(item.module.split(".")[1])
        elif isinstance(item, ast.Import):
            found.update(a.name.split(".")[1] for a in item.names if a.name.startswith("handlers."))
    return found


def _graph() -> dict[str, set[str]]:
    return {name: _handler_imports(tree) for name, tree in _modules().items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in `graph` (as the path around it), or None."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return path[path.index(name):] + [name]
        if name in done:
            return None
        for target in sorted(graph.get(name, ())):
            found = visit(target, path + [name])
            if found:
                return found
        done.add(name)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_handlers_have_no_import_cycle() -> None:
    graph = _graph()
    assert len(graph) >= 10  # the walk found the package
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"


def test_no_import_inside_a_function() -> None:
    late = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import | ast.ImportFrom):
                        late.append(f"handlers/{name}.py:{inner.lineno} in {node.name}")
    assert late == [], "imports belong at the top of the module: " + ", ".join(late)


def test_features_import_only_the_shared_base() -> None:
    graph = _graph()
    wrong = {name: sorted(targets - BASE) for name, targets in graph.items() if targets - BASE}
    assert wrong == {}, f"a feature module imports another feature: {wrong}"
    base_imports = {name: sorted(graph[name] - BASE) for name in BASE if name in graph and graph[name] - BASE}
    assert base_imports == {}


def test_no_private_name_crosses_modules() -> None:
    private = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("handlers"):
                private += [f"{name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert private == []


def test_the_registry_imports_no_feature() -> None:
    assert _graph()["registry"] == set()
