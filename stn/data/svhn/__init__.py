"""SVHN format 1 (whole house numbers) as a data set: the raw archives
(:mod:`stn.data.svhn.archives`), the ``digitStruct.mat`` reader (:mod:`stn.data.svhn.digit_struct`),
the Goodfellow et al. (2013) crops (:mod:`stn.data.svhn.crops`) prepared once into cached arrays
(:mod:`stn.data.svhn.prepare`), and the task (:mod:`stn.data.svhn.task`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from stn.data.base import DataSet, Splits, register_dataset
from stn.data.svhn.archives import DEFAULT_SPLITS, SVHN_FILES, SVHNArchive, download_svhn
from stn.data.svhn.crops import CROP_SIZE, MAX_DIGITS, NO_DIGIT
from stn.data.svhn.prepare import SPLIT_NAMES, load_prepared, prepare_svhn
from stn.data.svhn.task import SVHNTask


@register_dataset("svhn")
class SVHN(DataSet):
    """SVHN format 1 with the Goodfellow et al. (2013) crops (:func:`prepare_svhn`).

    A run's ``data`` section:

    - ``root``: the folder of the archives (downloaded there, or placed there by hand); the
      prepared arrays are cached in ``root/prepared``;
    - ``mirrors``: base URLs to download from; ``null`` (the default) means SVHN's own,
      http://ufldl.stanford.edu/housenumbers/; ``[]`` never downloads;
    - ``splits`` (optional): the archives to use, default ``[train, extra, test]``. Training uses
      train, and extra where listed (after train, in one array); testing uses test. Both
      ``train`` and ``test`` are needed; leaving out extra (1.9 GB) makes a quick run;
    - ``archives`` (optional): replaces the published size, SHA-256 and image count of some
      splits, ``{split: {size, sha256, images}}``, to use other (e.g. generated) archives.

    :meth:`load` prepares once (a valid cache is reused without reading the archives) and returns
    the images as tensors on the memory maps of the cached arrays, never all read into memory:
    uint8 ``(N, 64, 64, 3)``, copy-on-write (writes stay in memory, never reach the cache), with
    int64 labels ``(N, 5)`` (10 = no digit). Training gathers each batch from the map on the
    CPU, or moves the whole set onto the GPU.
    """

    image_shape = (CROP_SIZE, CROP_SIZE, 3)
    label_shape = (MAX_DIGITS,)
    label_values = NO_DIGIT + 1

    def splits(self, data: Mapping) -> tuple[str, ...]:
        """The splits a ``data`` section uses, in :data:`SPLIT_NAMES` order (train, extra, test)."""
        splits = data.get("splits") or DEFAULT_SPLITS
        unknown = [s for s in splits if s not in SPLIT_NAMES]
        if unknown:
            raise ValueError(f"unknown SVHN splits {unknown}; known: {', '.join(SPLIT_NAMES)}")
        missing = [s for s in ("train", "test") if s not in splits]
        if missing:
            raise ValueError(
                f"SVHN data needs the splits train and test (extra is optional); missing: {missing}"
            )
        return tuple(s for s in SPLIT_NAMES if s in splits)

    def files(self, data: Mapping) -> dict[str, SVHNArchive]:
        """The expected archives: the published ones, with ``data["archives"]`` replacing some."""
        files = dict(SVHN_FILES)
        for split, record in (data.get("archives") or {}).items():
            if split not in files:
                raise ValueError(f"archives: unknown SVHN split {split!r}; known: {', '.join(files)}")
            try:
                files[split] = SVHNArchive(
                    f"{split}.tar.gz", int(record["size"]), str(record["sha256"]), int(record["images"])
                )
            except (KeyError, TypeError) as err:
                raise ValueError(f"archives.{split} needs size, sha256 and images, got {record!r}") from err
        return files

    def mirrors(self, data: Mapping) -> Sequence[str] | None:
        """The mirrors to download from; ``None`` means each archive's own URL."""
        return data.get("mirrors")

    def train_size(self, data: dict) -> int:
        """The training crops before dropping the few longer than 5 digits."""
        files = self.files(data)
        return sum(files[split].images for split in self.splits(data) if split != "test")

    def raw_files(self, data: dict) -> list[Path]:
        files = self.files(data)
        return [Path(data["root"]) / files[s].name for s in self.splits(data)]

    def fetch(self, data: dict, target: Path) -> None:
        target = Path(target)
        files = self.files(data)
        matches = [s for s in self.splits(data) if files[s].name == target.name]
        if not matches:
            known = ", ".join(files[s].name for s in self.splits(data))
            raise ValueError(f"{target}: not an SVHN archive of this data section (known: {known})")
        download_svhn(target.parent, matches, files=files, mirrors=self.mirrors(data))

    def load(self, data: dict) -> Splits:
        root = Path(data["root"])
        prepare_svhn(root, splits=self.splits(data), files=self.files(data), mirrors=self.mirrors(data))
        out = []
        for group in ("train", "test"):
            images, labels = load_prepared(root / "prepared", group, mode="c")
            out += [torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))]
        return Splits(*out)

    def task(self, settings: dict) -> SVHNTask:
        name = settings.get("name", "SVHN")
        task = SVHNTask(name=name, random_crop=settings.get("random_crop"))
        if "canvas" in settings and settings["canvas"] != task.canvas:
            raise ValueError(
                f"task {name!r}: canvas is the network's input side and must be {task.canvas} "
                f"(64, or random_crop where set), got {settings['canvas']}"
            )
        return task
