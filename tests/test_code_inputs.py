"""Code inputs per data set and backbone: a job depends on the shared core, its own data set's
package and its own backbone's module, never another's."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from stn.backbones import BACKBONE_MODULES, backbone_spec
from stn.code_inputs import EVALUATION_MODULES, data_sources, import_closure, job_sources
from stn.data import DATASET_PACKAGES, get_dataset

ROOT = Path(__file__).resolve().parents[1] / "stn"
NOT_JOB_CODE = ("report", "bench", "fidelity.py")
DATASETS = sorted(DATASET_PACKAGES)


def names(paths: list[Path]) -> set[str]:
    return {path.relative_to(ROOT).as_posix() for path in paths}


def own_code(dataset: str) -> set[str]:
    """A data set's package files and its backbone's module (named as the data set)."""
    package = {p.relative_to(ROOT).as_posix() for p in (ROOT / "data" / dataset).glob("*.*")}
    return package | {f"backbones/{dataset}.py"}


@pytest.mark.parametrize("dataset", DATASETS)
def test_a_job_depends_on_the_core_its_data_set_and_its_backbone_only(dataset):
    sources = names(job_sources(ROOT, dataset, dataset, NOT_JOB_CODE))
    core = {"geometry.py", "networks.py", "training.py", "config.py", "schemas/run.schema.yaml"}
    core |= {"data/__init__.py", "data/base.py", "backbones/__init__.py", "backbones/blocks.py"}
    assert core <= sources
    assert own_code(dataset) <= sources
    for other in set(DATASETS) - {dataset}:
        assert not own_code(other) & sources, other
    assert not {name for name in sources if name.startswith(("report/", "bench/"))}
    assert not {"fidelity.py", "paper_results.yaml"} & sources


@pytest.mark.parametrize("dataset", DATASETS)
def test_training_code_leaves_out_and_never_imports_the_evaluation(dataset):
    evaluation = names(job_sources(ROOT, dataset, dataset, NOT_JOB_CODE))
    training = job_sources(ROOT, dataset, dataset, NOT_JOB_CODE + EVALUATION_MODULES)
    assert set(EVALUATION_MODULES) <= evaluation
    assert names(training) == evaluation - set(EVALUATION_MODULES)
    modules = [path for path in training if path.suffix == ".py"]
    assert not names(import_closure(modules, ROOT)) & set(EVALUATION_MODULES)  # not even indirectly


def test_training_a_run_loads_no_evaluation_module(tmp_path):
    """At run time too (imports inside functions included), a training job runs no evaluation code."""
    modules = sorted(f"stn.{name.removesuffix('.py')}" for name in EVALUATION_MODULES)
    code = (
        "import sys; from stn.training import train; from tests.conftest import tiny_config; "
        f"train(tiny_config(), {str(tmp_path / 'model.pt')!r}); "
        f"print(sorted(m for m in sys.modules if m in {modules!r}))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "model.pt").exists() and run.stdout.split("\n")[-2] == "[]", run.stdout[-500:]


def test_a_job_follows_its_runs_backbone_not_its_data_sets_name():
    sources = names(job_sources(ROOT, "mnist", "plankton", NOT_JOB_CODE))
    assert "backbones/plankton.py" in sources and "backbones/mnist.py" not in sources
    assert "data/mnist/task.py" in sources


def test_data_jobs_depend_on_their_data_set_and_the_warps():
    svhn = names(data_sources(ROOT, "svhn"))
    assert {"data/svhn/__init__.py", "data/svhn/schema.yaml", "geometry.py"} <= svhn
    assert "networks.py" not in svhn and not {n for n in svhn if n.startswith(("data/mnist/", "backbones/"))}


@pytest.mark.parametrize("dataset", DATASETS)
def test_each_data_set_package_registers_its_data_set_and_each_backbone_module_its_backbone(dataset):
    assert get_dataset(dataset).name == dataset
    assert dataset in BACKBONE_MODULES and backbone_spec(dataset).outputs


def test_asking_for_one_data_set_and_backbone_imports_no_other():
    code = (
        "import sys; from stn.data import get_dataset; from stn.backbones import build_backbone; "
        "get_dataset('mnist'); build_backbone('mnist'); "
        "print(sorted(m for m in sys.modules if m.startswith(('stn.data.', 'stn.backbones.'))))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(ast.literal_eval(run.stdout))
    assert {"stn.data.mnist", "stn.backbones.mnist"} <= loaded
    others = {f"stn.{kind}.{name}" for kind in ("data", "backbones") for name in ("svhn", "plankton")}
    assert not others & loaded
