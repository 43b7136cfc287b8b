"""The source files a workflow job's results depend on: its code inputs.

A job of a task runs the package's core and its own data set's code, never another data set's:
:func:`stn.data.registry.get_dataset` imports a data set's module only when that data set is
asked for. So a job's code inputs are

- the *core*: every top-level module of the package (``stn/*.py``), the data registry, the
  schemas, and whatever they import at module level;
- its data set's module (:data:`stn.data.registry.DATASET_MODULES`) and what that imports;

less the modules named in ``exclude`` (the report's, which only the tables and figures read, and
the tools'). Editing SVHN's code then plans no MNIST job, and editing a shared module (e.g.
``stn/geometry.py``) plans them all. Imports are read with :mod:`ast`, at module level only:
imports inside functions are how the package defers what a job may not need.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from stn.data.registry import DATASET_MODULES

PACKAGE = "stn"


def module_path(root: Path, module: str) -> Path | None:
    """The file of ``module`` (``stn.x.y``) in the package at ``root``, None outside it."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(tree: ast.Module) -> Iterable[str]:
    for node in tree.body:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)  # submodules


@cache
def module_imports(path: Path, root: Path) -> frozenset[Path]:
    """The package's files that ``path`` imports at module level (packages bring their ``__init__``)."""
    found = set()
    for module in _imported_modules(ast.parse(path.read_text(), str(path))):
        parts = module.split(".")
        for end in range(2, len(parts) + 1):  # stn.data.mnist imports stn/data/__init__.py too
            file = module_path(root, ".".join(parts[:end]))
            if file is not None:
                found.add(file)
    return frozenset(found)


def import_closure(paths: Iterable[Path], root: Path) -> set[Path]:
    """``paths`` and every package file they import, directly or not, at module level."""
    seen: set[Path] = set()
    pending = list(paths)
    while pending:
        path = pending.pop()
        if path not in seen:
            seen.add(path)
            pending.extend(module_imports(path, root))
    return seen


def job_sources(root: Path, dataset: str, exclude: Iterable[str] = ()) -> list[Path]:
    """The code inputs of a training or evaluation job of ``dataset`` (see the module docstring);
    ``exclude``: file names that are never inputs."""
    excluded = set(exclude)
    core = [p for p in root.glob("*.py") if p.name not in excluded]
    core.append(root / "data" / "registry.py")
    dataset_module = module_path(root, DATASET_MODULES[dataset])
    sources = import_closure([*core, dataset_module], root)
    sources |= set((root / "schemas").glob("*.yaml"))
    return sorted(p for p in sources if p.name not in excluded)


def data_sources(root: Path, dataset: str) -> list[Path]:
    """The code inputs of a job that prepares ``dataset`` or a test set of its tasks: its data set
    module with what it imports, and the warps (:mod:`stn.geometry`) that render its tasks."""
    dataset_module = module_path(root, DATASET_MODULES[dataset])
    return sorted(import_closure([dataset_module, root / "geometry.py"], root))
