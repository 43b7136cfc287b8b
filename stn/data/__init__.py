"""Data sets by name: each is a package of its own (its files, task, schema), imported only when
its name is asked for, so a job of one data set never runs another's code (the workflow's code
inputs of a job are its own data set's package and the shared core, :mod:`stn.code_inputs`).

Adding a data set is a package that subclasses :class:`stn.data.base.DataSet`, registers it and
ships its ``schema.yaml``, plus its name in :data:`DATASET_PACKAGES`.
"""

from __future__ import annotations

import importlib

from stn.data.base import DATASETS, DataSet

DATASET_PACKAGES = {"mnist": "stn.data.mnist", "svhn": "stn.data.svhn", "plankton": "stn.data.plankton"}
"""The package that registers each data set."""


def list_datasets() -> list[str]:
    """The names of the data sets: the packaged ones and any registered since."""
    return sorted({*DATASET_PACKAGES, *DATASETS})


def get_dataset(name: str) -> DataSet:
    """The registered data set ``name`` (its package is imported on first use)."""
    if name not in DATASETS and name in DATASET_PACKAGES:
        importlib.import_module(DATASET_PACKAGES[name])  # registers itself
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(list_datasets())}")
    return DATASETS[name]
