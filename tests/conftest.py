"""Shared fixtures: small real MNIST digits, tiny run configs, copies of the checkout."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from stn.config import resolve_run_config
from stn.data.base import Splits
from stn.data.mnist import load_digits
from tests.slurm_cluster import LocalSlurm

ROOT = Path(__file__).resolve().parents[1]

TINY_BACKBONE = {"channels": [6, 8], "loc_channels": 4, "loc_hidden": 8}
TINY_DEEP_TRAIN = {
    "batch_size": 4,
    "epochs": None,
    "iterations": 3,
    "checkpoint_every": 2,
    "eval_batch_size": 2,
}
"""Three steps of batch 4: training and evaluation of the deep (SVHN, Plankton) backbones on a CPU."""


@pytest.fixture(scope="session")
def digits() -> Splits:
    return load_digits("embedded")


@pytest.fixture()
def images(digits: Splits) -> torch.Tensor:
    """32 test digits as float (B, 1, 28, 28) in [0, 1]."""
    return digits.test_images[:32, None].float() / 255.0


def tiny_config(**overrides) -> dict:
    """A resolved run config that trains in about a second on a CPU."""
    config = {
        "seed": 0,
        "device": "cpu",
        "task": {"name": "R", "canvas": 28, "rotation": 90},
        "model": {"network": "STN-SL1", "backbone_args": dict(TINY_BACKBONE)},
        "train": {"batch_size": 32, "epochs": None, "iterations": 12, "checkpoint_every": 4},
    }
    for key, value in overrides.items():
        section, _, leaf = key.partition("__")
        if leaf:
            config.setdefault(section, {})[leaf] = value
        else:
            config[section] = value
    return resolve_run_config(config)


def copy_checkout(destination: Path, names: Sequence[str]) -> None:
    """Copy the checkout's files and folders ``names`` into ``destination`` (bytecode left out,
    times kept): a workflow whose code a test may edit, or that edits to the checkout leave alone."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, destination / name)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> LocalSlurm:
    """A single-node SLURM cluster on localhost (skipped where it cannot run)."""
    ok, reason = LocalSlurm.available()
    if not ok:
        pytest.skip(reason)
    cluster = LocalSlurm()
    cluster.start(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        cluster.stop()


def pytest_configure(config: pytest.Config) -> None:
    """Under ``--dist loadgroup``, stop before any test where pytest-xdist cannot group the tests
    marked ``xdist_group`` (pytest-xdist#1386, pytest 9.2 with pytest-xdist 3.8): they would be
    spread over the workers, each SLURM test starting a cluster of its own, slower."""
    option = config.option
    workers = getattr(option, "dist", None) == "loadgroup" and option.numprocesses
    if not workers or hasattr(config, "workerinput"):
        return
    from importlib.metadata import version

    from packaging.version import Version  # a dependency of pytest

    release = {name: Version(version(name)).release[:2] for name in ("pytest", "pytest-xdist")}
    if release["pytest"] >= (9, 2) and release["pytest-xdist"] <= (3, 8):
        raise pytest.UsageError(
            f"pytest {version('pytest')} with pytest-xdist {version('pytest-xdist')} ignores xdist_group "
            "under --dist loadgroup (pytest-xdist#1386): install the test extra's pytest "
            "(pip install -e '.[test]'), or run the tests in one process (STN_TEST_WORKERS=0)"
        )
