"""The package's shape: no import cycle (module-level or inside functions), and rooms that stay
small (no file over 600 lines, no function over 80)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from stn.code_inputs import imported_modules, module_path

ROOT = Path(__file__).resolve().parents[1] / "stn"
SOURCES = sorted(ROOT.rglob("*.py"))
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80


def imported_files(path: Path) -> set[Path]:
    """The package's files ``path`` imports anywhere (module level or in a function): a
    ``from a.b import c`` imports ``a/b`` and, where it is a module, ``a/b/c``."""
    modules = imported_modules(ast.walk(ast.parse(path.read_text(), str(path))))
    return {file for module in modules if (file := module_path(ROOT, module)) is not None} - {path}


def find_cycle(graph: dict[Path, set[Path]]) -> list[Path] | None:
    """One import cycle of ``graph`` (each file's imports) as a path that returns to its start."""
    state: dict[Path, str] = {}
    stack: list[Path] = []

    def visit(node: Path) -> list[Path] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    a, b, c = Path("a"), Path("b"), Path("c")
    assert find_cycle({a: {b}, b: {c}, c: set()}) is None
    assert find_cycle({a: {b}, b: {c}, c: {a}}) == [a, b, c, a]


def test_no_import_cycle_in_the_package():
    cycle = find_cycle({path: imported_files(path) for path in SOURCES})
    assert cycle is None, " -> ".join(p.relative_to(ROOT).as_posix() for p in cycle)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_files_and_functions_stay_small(path):
    text = path.read_text()
    lines = text.count("\n")
    assert lines <= MAX_FILE_LINES, f"{path.name}: {lines} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.name}: {', '.join(long)}"
