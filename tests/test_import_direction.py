"""The package's import arrows run one way, read from the source (AST), without importing it.

reports -> answers -> results: `results` (records, the `Needs` checks, the scaling and
time-to-target tables) sits below both; `layout` imports nothing; and no two modules of the
package import each other, directly or around a longer circle, at any level (a function-level
import closes a circle as surely as a top-level one).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import scaling_study

PACKAGE = Path(scaling_study.__file__).parent
# package -> packages it must never import (at any level, lazy imports included)
FORBIDDEN = {
    "results": ("scaling_study.reports", "scaling_study.answers"),
    "answers": ("scaling_study.reports",),
}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, package: Path = PACKAGE) -> set[str]:
    """Every `scaling_study...` module named by an import anywhere in `path` (`from a import b`
    counts as a.b where a.b is a module, else as a)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _is_module(sub, package) else node.module)
    return {name for name in found if name.split(".")[0] == "scaling_study"}


def _is_module(name: str, package: Path) -> bool:
    rel = Path(*name.split(".")[1:])
    return (package / rel).with_suffix(".py").is_file() or (package / rel / "__init__.py").is_file()


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    return {module_name(p, package): imports_of(p, package) for p in sorted(package.rglob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt in graph and not state.get(nxt):
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node):
            cycle = visit(node)
            if cycle:
                return cycle
    return None


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_packages_never_import_upper_ones(package):
    wrong = {module: sorted(name for name in names if name.startswith(FORBIDDEN[package]))
             for module, names in import_graph().items() if module.startswith(f"scaling_study.{package}")}
    assert {m: names for m, names in wrong.items() if names} == {}


def test_layout_imports_nothing():
    tree = ast.parse((PACKAGE / "layout.py").read_text(encoding="utf-8"))
    names = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [ast.unparse(n) for n in names if not (isinstance(n, ast.ImportFrom) and n.module == "__future__")] == []


def test_no_import_circle_in_the_package():
    assert find_cycle(import_graph()) is None


def test_the_checks_see_a_circle_and_a_wrong_arrow(tmp_path):
    pkg = tmp_path / "scaling_study"
    (pkg / "results").mkdir(parents=True)
    (pkg / "results" / "a.py").write_text("def f():\n    from scaling_study.results import b\n")
    (pkg / "results" / "b.py").write_text("from scaling_study.results.a import f\nimport scaling_study.reports.x\n")
    graph = import_graph(pkg)
    assert "scaling_study.reports.x" in graph["scaling_study.results.b"]
    assert find_cycle(graph) in (["scaling_study.results.a", "scaling_study.results.b", "scaling_study.results.a"],
                                 ["scaling_study.results.b", "scaling_study.results.a", "scaling_study.results.b"])
