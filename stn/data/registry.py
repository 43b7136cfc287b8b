"""Data sets by name, behind one interface, as backbones are.

A data set knows its raw files (with checksums and mirrors), loads them (preparing them once
into cached uint8 arrays where that pays), and builds the tasks drawn from it: a task holds the
batched, on-device training augmentation, the fixed test set and, where the augmentation is
invertible, each image's pose. The workflow's rules and the training code see only this
interface; adding a data set is one module that calls :func:`register_dataset`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor


@dataclass(frozen=True)
class Splits:
    """A data set's training and test images (uint8, one image per row) and labels (int64)."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor


class Task(Protocol):
    """What a task draws from its data set's images, batched on their device."""

    name: str
    rotation: float  # the largest rotation it applies (degrees): rotation measures apply when > 0

    def draw(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> dict[str, Tensor]:
        """The random numbers of one batch's augmentation."""
        ...

    def render(self, images: Tensor, draws: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The network inputs (B, C, H, W) in [0, 1] and the drawn parameters, from uint8 images."""
        ...

    def undo(self, params: dict[str, Tensor]) -> Tensor | None:
        """Each image's pose: the warp (B, 2, 3) of the input that undoes its augmentation;
        ``None`` where the task has none (oracle transformers then cannot run)."""
        ...

    def test_set(self, images: Tensor, labels: Tensor, seed: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """The fixed test set: uint8 inputs, their labels and the drawn parameters."""
        ...


class DataSet(Protocol):
    """One data set of the registry."""

    name: str

    def raw_files(self, data: dict[str, Any]) -> list[Path]:
        """The raw files a run's ``data`` section needs: those present, else the download targets
        (none for data shipped with a package)."""
        ...

    def fetch(self, data: dict[str, Any], target: Path) -> None:
        """Download (or verify, where placed by hand) the raw file ``target`` of :meth:`raw_files`."""
        ...

    def load(self, data: dict[str, Any]) -> Splits:
        """The training and test images of a run's ``data`` section."""
        ...

    def task(self, settings: dict[str, Any]) -> Task:
        """The task a run config's ``task`` section describes."""
        ...

    def train_size(self, data: dict[str, Any]) -> int:
        """How many training images a run's ``data`` section holds, without loading them."""
        ...

    def random_images(self, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``count`` random uint8 images and labels shaped as the data set's (for benchmarks)."""
        ...


def chosen_mirrors(data: Mapping[str, Any]) -> list[str] | None:
    """The mirrors a ``data`` section chooses, or ``None`` where it leaves them to the data set
    (``null``, or the schema's default, which is MNIST's mirrors); ``[]`` never downloads."""
    from stn.data.mnist_files import DEFAULT_MNIST_MIRRORS

    mirrors = data.get("mirrors")
    if mirrors is None or list(mirrors) == list(DEFAULT_MNIST_MIRRORS):
        return None
    return list(mirrors)


DATASETS: dict[str, DataSet] = {}


def register_dataset(name: str) -> Callable[[type], type]:
    """Register a class (instantiated without arguments) as the data set ``name``."""

    def decorator(cls: type) -> type:
        instance = cls()
        instance.name = name
        DATASETS[name] = instance
        return cls

    return decorator


DATASET_MODULES = {"mnist": "stn.data.mnist", "svhn": "stn.data.svhn", "plankton": "stn.data.plankton"}
"""The module that registers each data set, imported only when its data set is asked for: a job
of one data set never runs another's code (so the workflow's code inputs of a job are its own
data set's modules and the shared core, :mod:`stn.code_inputs`)."""


def get_dataset(name: str) -> DataSet:
    """The registered data set ``name`` (its module is imported on first use)."""
    if name not in DATASETS and name in DATASET_MODULES:
        importlib.import_module(DATASET_MODULES[name])  # registers itself
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASET_MODULES))}")
    return DATASETS[name]
