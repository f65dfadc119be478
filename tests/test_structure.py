"""The package's structure as a contract: no import circle, counting the imports inside functions too.

A function-level import only hides a circle from the interpreter; the modules still depend on each
other both ways. Importing a submodule by name (``from cxrbio.stages import scan``) is an arrow to
that submodule, not to the package's face.
"""

from __future__ import annotations

import ast

from tests.helpers import REPO

PACKAGE = REPO / "src"


def module_graph() -> dict[str, set[str]]:
    """cxrbio module -> the cxrbio modules it imports anywhere in its text (top level, functions, TYPE_CHECKING)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
                targets = submodules or [base]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_circle_finder_finds_a_circle_hidden_in_a_function():
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert circles(graph) == [["a", "b"]]


def test_no_import_circle_among_cxrbio_modules_even_counting_imports_inside_functions():
    graph = module_graph()
    assert "cxrbio.runtime.backend" in graph and "cxrbio.runtime.quiet" in graph["cxrbio.runtime.backend"]  # the graph is read
    assert circles(graph) == []


def test_every_declared_outside_file_kind_has_a_resolver():
    from cxrbio.run.artifacts import ARTIFACTS
    from cxrbio.run.file_inputs import RESOLVERS

    kinds = {a.files for a in ARTIFACTS.values() if a.files}
    assert kinds == set(RESOLVERS)
    assert ARTIFACTS["train_fold"].files == "weights" and ARTIFACTS["masks"].files == "masks"
