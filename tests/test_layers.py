"""The folders are the layers: imports go down only, and no import cycle, deferred or not.

Layers, top to bottom: the public face (``hpcapp/__main__.py``, ``hpcapp/testing.py``), the
commands (``cli/``), orchestration (``jobs/``), the MPI runtime (``parallel/``), I/O and CF
coding (``io/``), the kernels (``kernels/``), and the bottom (``errors``, ``partition``,
``text``). A module may import its own layer and the layers below it. Every import counts,
including those inside functions (deferred to keep start-up light), so a deferred import cannot
hide a cycle or an upward reach.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hpcapp"
LAYERS = {  # higher may import lower
    "face": 6,
    "cli": 5,
    "jobs": 4,
    "parallel": 3,
    "io": 2,
    "kernels": 1,
    "examples": 1,
    "bottom": 0,
}
FACE = ("hpcapp.__main__", "hpcapp.testing")
BOTTOM = ("hpcapp.errors", "hpcapp.partition", "hpcapp.text")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(name: str) -> str:
    """Return the layer of module ``name``; a module in no layer is an error."""
    if name in FACE or name == "hpcapp":
        return "face"
    if name in BOTTOM:
        return "bottom"
    parts = name.split(".")
    if len(parts) >= 2 and parts[1] in LAYERS:
        return parts[1]
    raise AssertionError(f"{name} is in no layer: put it in a folder or list it in FACE/BOTTOM")


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Return the hpcapp modules ``path`` imports, at any depth (functions included)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("hpcapp")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("hpcapp"):
                continue
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
    if isinstance(tree, ast.Module):  # TYPE_CHECKING-only imports are not run: leave them out
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and inner.module:
                        found.discard(inner.module)
                        found -= {f"{inner.module}.{a.name}" for a in inner.names}
    # The package root holds the version: importing it is not importing a layer.
    return {name for name in found if name != "hpcapp"}


GRAPH = {name: imports_of(path, set(modules())) for name, path in modules().items()}


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_imports_go_down_only(name):
    mine = LAYERS[layer_of(name)]
    upward = [dep for dep in GRAPH[name] if LAYERS[layer_of(dep)] > mine]
    assert not upward, f"{name} ({layer_of(name)}) imports from above: {upward}"


def test_no_import_cycle():
    """Depth-first search over every import, deferred ones included."""
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(GRAPH.get(name, ())):
            if dep == name or dep not in GRAPH:
                continue
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*stack[stack.index(dep) :], dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_the_checker_sees_deferred_and_upward_imports(tmp_path):
    """The checker itself can fail: a deferred upward import is found."""
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from hpcapp.cli.parser import parse\n")
    assert "hpcapp.cli.parser" in imports_of(path, set(modules()))
    assert LAYERS[layer_of("hpcapp.cli.parser")] > LAYERS[layer_of("hpcapp.io.coding.variables")]


def test_modules_stay_small():
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
        and not name.startswith("hpcapp.kernels._fused")  # numba's cache sees one file only
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
