"""The source files a workflow job's results depend on: its code inputs.

A job of a run executes the package's core, its own data set's package and its own backbone's
module, never another data set's or backbone's: :func:`stn.data.get_dataset` and
:func:`stn.backbones.build_backbone` import those only when their name is asked for. So a job's
code inputs are

- the *core*: every top-level module of the package (``stn/*.py``), the schemas, and whatever
  they import at module level (the data sets' and backbones' shared base modules among them);
- its data set's package (:data:`stn.data.DATASET_PACKAGES`) with its ``schema.yaml`` and what
  it imports, and its backbone's module (:data:`stn.backbones.BACKBONE_MODULES`);

less the paths named in ``exclude`` (the report's package, which only the tables and figures
read, and the tools'). Editing SVHN's package or the Plankton backbone then plans no MNIST job,
and editing a shared module (e.g. ``stn/geometry.py``) plans them all. Imports are read with
:mod:`ast`, at module level only: imports inside functions are how the package defers what a job
may not need.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from stn.backbones import BACKBONE_MODULES
from stn.data import DATASET_PACKAGES

PACKAGE = "stn"
EVALUATION_MODULES = ("evaluation.py", "evaluation_memo.py", "invariance.py", "statistics.py")
"""What evaluation runs and training never does (its modules import none of them, at any level:
tests/test_code_inputs.py): a training job's code inputs leave them out, so an edit of the
evaluation re-evaluates every run without retraining one. (A training job also evaluates its run
for the evaluation job, :mod:`stn.evaluation_memo`, under a key that holds this code's checksums.)"""


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


def imported_modules(nodes: Iterable[ast.AST]) -> Iterable[str]:
    """The module names the import statements among ``nodes`` name (``from a import b`` names
    ``a`` and ``a.b``, which may be a submodule)."""
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)  # submodules


@cache
def module_imports(path: Path, root: Path) -> frozenset[Path]:
    """The package's files that ``path`` imports at module level (packages bring their ``__init__``)."""
    found = set()
    for module in imported_modules(ast.parse(path.read_text(), str(path)).body):
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


def _excluded(path: Path, root: Path, exclude: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``exclude`` (file or folder paths relative to ``root``) or in one."""
    relative = path.relative_to(root).as_posix()
    return any(relative == name or relative.startswith(f"{name.rstrip('/')}/") for name in exclude)


def dataset_sources(root: Path, dataset: str) -> list[Path]:
    """A data set's package: its modules (with what they import) and its schema."""
    package = module_path(root, DATASET_PACKAGES[dataset])
    return [*import_closure([package], root), *package.parent.glob("*.yaml")]


def job_sources(root: Path, dataset: str, backbone: str, exclude: Iterable[str] = ()) -> list[Path]:
    """The code inputs of an evaluation job of a run of ``dataset`` on ``backbone`` (see the
    module docstring); ``exclude``: paths relative to ``root`` that are never inputs. A training
    job's are those less :data:`EVALUATION_MODULES`."""
    core = [p for p in root.glob("*.py") if not _excluded(p, root, exclude)]
    sources = import_closure([*core, module_path(root, BACKBONE_MODULES[backbone])], root)
    sources |= {*dataset_sources(root, dataset), *(root / "schemas").glob("*.yaml")}
    return sorted(p for p in sources if not _excluded(p, root, exclude))


def data_sources(root: Path, dataset: str) -> list[Path]:
    """The code inputs of a job that prepares ``dataset`` or a test set of its tasks: its data set
    package (:func:`dataset_sources`) and the warps (:mod:`stn.geometry`) that render its tasks."""
    return sorted({*dataset_sources(root, dataset), *import_closure([root / "geometry.py"], root)})
