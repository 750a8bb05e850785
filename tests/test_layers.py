"""The import graph of src/muracli: layers that import one way, and no cycles.

Every ``import`` counts, at the top of a module, inside a function or under
``TYPE_CHECKING``, and so does every module named in a string (the maps of
``muracli.lazy`` and ``importlib.import_module`` calls). ARCHITECTURE.md draws
the same layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Bottom to top; a module may import its own layer and those below it, never above.
LAYERS = (
    {"muracli", "errors", "files", "progress", "lazy", "choices", "machine"},
    {"data"},
    {"synthetic"},
    {"batches"},
    {"models"},
    {"metrics"},
    {"runtime"},
    {"training"},
    {"evaluation"},
    {"predict"},
    {"demo"},
    {"cli", "__main__"},
)


def module_names(src: Path = SRC) -> dict[str, Path]:
    names = {}
    for path in sorted((src / "muracli").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """``{module: {muracli modules it imports}}``."""
    modules = module_names(src)
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                edges.add(base)
                # `from muracli.runtime import distributed` imports a module, not a name
                edges.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules:
                edges.add(node.value)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else module
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS and to ARCHITECTURE.md")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a)
    )


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between top-level packages (and leaf modules) of muracli."""
    def top(module: str) -> str:
        return module.split(".")[1] if "." in module else module

    packages: dict[str, set[str]] = {}
    for a, targets in graph.items():
        packages.setdefault(top(a), set()).update(top(b) for b in targets if top(b) != top(a))
    return packages


def test_every_module_is_in_a_layer():
    for module in import_graph():
        layer_of(module)


def test_no_module_imports_a_higher_layer():
    assert upward_imports(import_graph()) == []


def test_no_import_cycle_between_modules():
    assert find_cycle(import_graph()) is None


def test_no_import_cycle_between_packages():
    assert find_cycle(package_graph(import_graph())) is None


def test_the_graph_sees_imports_in_functions_and_lazy_maps():
    graph = import_graph()
    assert "muracli.predict.infer" in graph["muracli.predict"]  # a muracli.lazy map
    assert "muracli.data.cache_build" in graph["muracli.runtime.caches"]  # imported inside a function
    assert "muracli.runtime.distributed" in graph["muracli.runtime.caches"]  # `from package import module`


@pytest.mark.parametrize(
    "edge, problem",
    [
        (("muracli.data.layout", "muracli.training.trainer"), "upward"),
        (("muracli.runtime.checkpoint", "muracli.runtime.caches"), "cycle"),
    ],
)
def test_the_checks_fail_when_a_bad_import_is_added(tmp_path, edge, problem):
    """Copy the sources, add one import to a module, and the check reports it."""
    import shutil

    shutil.copytree(SRC / "muracli", tmp_path / "muracli")
    source, target = edge
    path = module_names(tmp_path)[source]
    path.write_text(path.read_text(encoding="utf-8") + f"\n\ndef _added():\n    import {target}\n", encoding="utf-8")
    graph = import_graph(tmp_path)
    if problem == "upward":
        assert f"{source} -> {target}" in upward_imports(graph)
    else:
        cycle = find_cycle(graph)
        assert cycle is not None and source in cycle and target in cycle


def test_the_core_never_prints():
    """Only cli/ writes to the terminal; the core returns values and calls ``progress``."""
    offenders = []
    for name, path in module_names().items():
        if name.startswith("muracli.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{name}:{node.lineno} print()")
            if isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr") and getattr(node.value, "id", "") == "sys":
                offenders.append(f"{name}:{node.lineno} sys.{node.attr}")
    assert offenders == []
