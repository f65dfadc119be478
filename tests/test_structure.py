"""The package's structure as a contract: no import circle, counting the imports inside functions too.

A function-level import only hides a circle from the interpreter; the modules still depend on each
other both ways. Importing a submodule by name (``from cxrbio.stages import scan``) is an arrow to
that submodule, not to the package's face.
"""

from __future__ import annotations

import ast
import re

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


# --- Who writes, and who knows file names -------------------------------------------------------------------------
#
# The rule: only stages write artifacts and stamps, and only ``cxrbio.run`` joins file names. The run package is
# the storage layer (layout, atomic writes, stamps, the readers and writers of each artifact's files); a stage
# decides what to write and hands it there; everything else computes and returns. Each exception below is a file
# that is not a run's: a data set's own files, Keras's own config, a user's mask folder.

CXRBIO = PACKAGE / "cxrbio"
WRITING_CALLS = {"atomic_write", "atomic_write_text", "atomic_write_parquet", "write_stamp", "remove_stamp"}
WRITING_METHODS = {"to_parquet", "write_text", "write_bytes", "unlink", "rmtree", "savez", "savez_compressed"}
FILE_NAME = re.compile(r"\.(parquet|jsonl?|keras|h5|csv|npz|npy|yaml|txt|png|html)$")
WRITERS = ("run/", "stages/")
MAY_WRITE = {"data/phantom/generate.py": "writes the phantom, a data set (its images, masks, manifest), not a run"}
MAY_NAME_FILES = {
    "data/layouts.py": "reads a data set's own metadata files (metadata.csv, manifest.csv)",
    "data/phantom/generate.py": "writes and reads the phantom data set's files",
    "runtime/backend.py": "reads Keras's own config (~/.keras/keras.json) to tell the backend",
    "features/lung_masks.py": "looks for a user's mask as <image name>.png in the user's --masks folder",
}


def _literal(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}" for v in node.values)
    return None


def violations(source: str) -> tuple[list[str], list[str]]:
    """(writing calls, file names joined by hand) in one module's source, as 'line: what'."""
    writes, joins = [], []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in WRITING_CALLS:
                writes.append(f"{node.lineno}: {func.id}")
            elif isinstance(func, ast.Attribute) and (func.attr in WRITING_CALLS or func.attr in WRITING_METHODS):
                writes.append(f"{node.lineno}: .{func.attr}")
            elif isinstance(func, ast.Name) and func.id == "open" and len(node.args) > 1:
                mode = _literal(node.args[1]) or ""
                if set(mode) & set("wax"):
                    writes.append(f"{node.lineno}: open(..., {mode!r})")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            name = _literal(node.right)
            if name and FILE_NAME.search(name):
                joins.append(f"{node.lineno}: / {name!r}")
    return writes, joins


def _modules() -> list[tuple[str, str]]:
    return [(path.relative_to(CXRBIO).as_posix(), path.read_text()) for path in sorted(CXRBIO.rglob("*.py"))]


def test_the_rule_checker_finds_a_write_and_a_file_name_joined_by_hand():
    writes, joins = violations(
        'from pathlib import Path\n'
        'def f(out: Path, frame) -> None:\n'
        '    frame.to_parquet(out / "tests.parquet")\n'
        '    atomic_write_text(out / f"{frame}.json", "x")\n'
        '    open(out / "x", "w")\n'
        '    (out / "dir").mkdir()\n')
    assert writes == ["3: .to_parquet", "4: atomic_write_text", "5: open(..., 'w')"]
    assert joins == ["3: / 'tests.parquet'", "4: / '{}.json'"]


def test_only_stages_and_the_run_package_write():
    found = {rel: writes for rel, source in _modules()
             if not rel.startswith(WRITERS) and rel not in MAY_WRITE and (writes := violations(source)[0])}
    assert found == {}, "write through cxrbio.run from a stage, and return results from everywhere else"
    assert all((CXRBIO / rel).is_file() for rel in MAY_WRITE)  # an exception for a file that is gone goes too


def test_only_the_run_package_joins_file_names():
    found = {rel: joins for rel, source in _modules()
             if not rel.startswith("run/") and rel not in MAY_NAME_FILES and (joins := violations(source)[1])}
    assert found == {}, "name the file in cxrbio.run (a function that returns its path, or reads or writes it)"
    assert all((CXRBIO / rel).is_file() for rel in MAY_NAME_FILES)


# --- Packages by role and the public API ---------------------------------------------------------------------------

ROLES = {"run", "runtime", "data", "models", "training", "features", "evaluation", "confounding", "analysis", "stages",
         "report", "cli"}
TOP_LEVEL = {"__init__.py", "__main__.py", "config.py", "errors.py"}


def test_every_module_lives_in_a_package_of_its_role():
    top = {p.name for p in CXRBIO.glob("*.py")}
    packages = {p.name for p in CXRBIO.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert top == TOP_LEVEL
    assert packages == ROLES


def test_the_public_api_is_declared():
    import importlib

    from cxrbio import stages

    for name in stages.__all__:
        module = importlib.import_module(f"cxrbio.stages.{name}")
        assert "run" in module.__all__, name
        for exported in module.__all__:
            assert hasattr(module, exported), f"cxrbio.stages.{name}.{exported}"
        result = module.run.__annotations__["return"]
        assert any(result == e or result.endswith(f".{e}") for e in module.__all__), (name, result)
    for module in ("cxrbio.config", "cxrbio.errors", "cxrbio.report", "cxrbio.data.phantom"):
        loaded = importlib.import_module(module)
        assert loaded.__all__ and all(hasattr(loaded, n) for n in loaded.__all__), module


# --- Scripts -----------------------------------------------------------------------------------------------------


def test_every_script_in_analyses_and_benchmarks_answers_help():
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    scripts = sorted([*(REPO / "analyses").glob("*.py"), *(REPO / "benchmarks").glob("*.py")])
    assert len(scripts) > 10

    def help_of(script):
        done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=240,
                              cwd=REPO, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        return script.name, done.returncode, done.stdout + done.stderr[-500:]

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(help_of, scripts))
    failed = {name: output for name, code, output in results if code != 0 or "usage" not in output.lower()}
    assert failed == {}
