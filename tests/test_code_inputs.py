"""Code inputs per data set: a job depends on the shared core and its own data set's modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stn.code_inputs import data_sources, job_sources
from stn.data.registry import DATASET_MODULES, get_dataset

ROOT = Path(__file__).resolve().parents[1] / "stn"
NOT_JOB_CODE = ("report.py", "bench.py")


def names(paths: list[Path]) -> set[str]:
    return {path.relative_to(ROOT).as_posix() for path in paths}


def test_a_job_depends_on_the_core_and_its_own_data_set_only():
    mnist, svhn, plankton = (names(job_sources(ROOT, d, NOT_JOB_CODE)) for d in ("mnist", "svhn", "plankton"))
    core = {"geometry.py", "networks.py", "training.py", "backbones.py", "data/registry.py"}
    core.add("schemas/run.schema.yaml")
    assert core <= mnist & svhn & plankton
    assert "data/mnist.py" in mnist and not {"data/svhn.py", "data/plankton.py"} & mnist
    assert "data/svhn.py" in svhn and not {"data/mnist.py", "data/plankton.py"} & svhn
    assert {"data/plankton.py", "data/mnist.py"} <= plankton  # it imports stratified_split from mnist
    assert "data/svhn.py" not in plankton
    assert not {"report.py", "bench.py", "paper_results.yaml"} & (mnist | svhn | plankton)


def test_data_jobs_depend_on_their_data_set_and_the_warps():
    svhn = names(data_sources(ROOT, "svhn"))
    assert {"data/svhn.py", "geometry.py"} <= svhn and "networks.py" not in svhn
    assert "data/mnist.py" not in svhn


@pytest.mark.parametrize("dataset", sorted(DATASET_MODULES))
def test_each_data_set_module_registers_its_data_set(dataset):
    assert get_dataset(dataset).name == dataset


def test_asking_for_one_data_set_imports_no_other():
    code = "import sys; from stn.data.registry import get_dataset; get_dataset('mnist'); " + (
        "print(sorted(m for m in sys.modules if m.startswith('stn.data.')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "stn.data.mnist" in loaded and "stn.data.svhn" not in loaded and "stn.data.plankton" not in loaded
