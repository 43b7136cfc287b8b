"""What every data set and task of the package is: the interface the workflow and training see.

A data set knows its raw files (with checksums and mirrors), loads them (preparing them once
into cached uint8 arrays where that pays), and builds the tasks drawn from it: a task holds the
batched, on-device training augmentation, the fixed test set and, where the augmentation is
invertible, each image's pose. Each data set is a package of :mod:`stn.data` that subclasses
:class:`DataSet`, calls :func:`register_dataset` and ships ``schema.yaml``: the schema and
defaults of its own ``data`` and ``task`` sections. This module imports nothing of the package
(a leaf); :mod:`stn.data` finds the packages by name.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor


@dataclass(frozen=True)
class Splits:
    """A data set's training and test images (uint8, one image per row) and labels (int64)."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor


class UndoCheckFailed(AssertionError):
    """A task's undo warp does not return its rendered images to the canonical ones."""


def relative_residual(images: Tensor, reference: Tensor) -> float:
    """The mean over images of ``||images - reference|| / ||reference||``."""
    difference = (images - reference).flatten(1).norm(dim=1)
    return float((difference / reference.flatten(1).norm(dim=1)).mean())


class Task(ABC):
    """What a task draws from its data set's images, batched on their device.

    Subclasses are frozen dataclasses with at least ``name``, ``canvas`` (the side of the
    network's square inputs) and ``rotation`` (the largest rotation the task applies, in
    degrees: the rotation measures apply when it is > 0).
    """

    name: str
    canvas: int
    rotation: float

    @abstractmethod
    def draw(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> dict[str, Tensor]:
        """The random numbers of one batch's augmentation."""

    @abstractmethod
    def render(self, images: Tensor, draws: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The network inputs (B, C, H, W) in [0, 1] and the drawn parameters, from uint8 images."""

    @abstractmethod
    def undo(self, params: dict[str, Tensor]) -> Tensor | None:
        """Each image's pose: the warp (B, 2, 3) of the input that undoes its augmentation;
        ``None`` where the task has none (oracle transformers then cannot run)."""

    @abstractmethod
    def test_set(self, images: Tensor, labels: Tensor, seed: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """The fixed test set: uint8 inputs, their labels and the drawn parameters."""

    def canonical(self, images: Tensor) -> Tensor:
        """The images (B, C, H, W) in [0, 1] as the task renders them unaugmented: what
        :meth:`undo` returns an augmented image to."""
        raise NotImplementedError(f"task {self.name!r} has no pose, so no canonical image")

    def check_undo(self, images: Tensor, tolerance: float, generator: torch.Generator | None = None) -> float:
        """Render ``images`` (uint8) augmented, warp them back with :meth:`undo` and return the
        relative residual against :meth:`canonical`; raise :class:`UndoCheckFailed` above
        ``tolerance`` (interpolation blurs rotated and scaled images, so it is not 0)."""
        from stn.geometry import warp  # at call time: the base module stays a leaf

        rendered, params = self.render(images, self.draw(len(images), generator, images.device))
        poses = self.undo(params)
        if poses is None:
            raise NotImplementedError(f"task {self.name!r} has no pose to undo")
        residual = relative_residual(warp(rendered, poses), self.canonical(images))
        if residual > tolerance:
            raise UndoCheckFailed(
                f"task {self.name!r}: undoing the augmentation leaves a relative residual of "
                f"{residual:.3g} against the canonical images, above {tolerance:.3g}"
            )
        return residual


class DataSet(ABC):
    """One data set: subclass it in a package of :mod:`stn.data` and register the class.

    ``image_shape``, ``label_shape`` and ``label_values`` describe its uint8 images and int64
    labels (for :meth:`random_images`); ``location_keys`` are the ``data`` keys that say where
    the files come from, not what they hold (a test set does not depend on them); ``backbone``
    is the backbone of its runs where a run names none (``None``: the one of the data set's name).
    """

    name: str
    backbone: str | None = None
    image_shape: tuple[int, ...]
    label_shape: tuple[int, ...] = ()
    label_values: int
    location_keys: tuple[str, ...] = ("root", "mirrors")

    def schema(self) -> dict[str, Any]:
        """The JSON schemas of this data set's ``data`` and ``task`` sections, with defaults:
        ``schema.yaml`` beside the module that defines the class."""
        return _package_schema(type(self).__module__)

    @abstractmethod
    def raw_files(self, data: dict[str, Any]) -> list[Path]:
        """The raw files a run's ``data`` section needs: those present, else the download targets
        (none for data shipped with a package)."""

    @abstractmethod
    def fetch(self, data: dict[str, Any], target: Path) -> None:
        """Download (or verify, where placed by hand) the raw file ``target`` of :meth:`raw_files`."""

    @abstractmethod
    def load(self, data: dict[str, Any]) -> Splits:
        """The training and test images of a run's ``data`` section."""

    @abstractmethod
    def task(self, settings: dict[str, Any]) -> Task:
        """The task a resolved ``task`` section describes."""

    @abstractmethod
    def train_size(self, data: dict[str, Any]) -> int:
        """How many training images a run's ``data`` section holds, without loading them."""

    def random_images(self, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``count`` random uint8 images and labels shaped as the data set's (for benchmarks)."""
        images = torch.randint(0, 256, (count, *self.image_shape), generator=generator, dtype=torch.uint8)
        labels = torch.randint(0, self.label_values, (count, *self.label_shape), generator=generator)
        return images, labels


@cache
def _package_schema(module: str) -> dict[str, Any]:
    path = Path(sys.modules[module].__file__).with_name("schema.yaml")
    return yaml.safe_load(path.read_text())


DATASETS: dict[str, DataSet] = {}


def register_dataset(name: str) -> Callable[[type[DataSet]], type[DataSet]]:
    """Register a :class:`DataSet` subclass (instantiated without arguments) as ``name``."""

    def decorator(cls: type[DataSet]) -> type[DataSet]:
        instance = cls()
        instance.name = name
        DATASETS[name] = instance
        return cls

    return decorator
