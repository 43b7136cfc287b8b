"""PlanktonSet 1.0: the labelled plankton images of the 2015 National Data Science Bowl.

Source: Cowen et al. (2015), NOAA NCEI accession 0127422, version 2.3 (DOI 10.7289/v5d21vjd): 121
class folders of grayscale JPEGs of varying size (a third-party mirror reports 60,736 files; Kaggle's
``train.zip`` of the competition holds 30,336 of them). Where they are found and how they are read:
:mod:`stn.data.plankton.sources`; their preparation into cached arrays and the split:
:mod:`stn.data.plankton.prepare`; the augmentation: :mod:`stn.data.plankton.task`.
"""

from __future__ import annotations

from pathlib import Path

from stn.data.base import DataSet, Splits, register_dataset
from stn.data.download import DownloadError
from stn.data.plankton.prepare import load_plankton, plankton_cache
from stn.data.plankton.sources import (
    NCEI_IMAGES,
    SOURCES,
    TARBALL,
    by_hand,
    download_plankton,
    find_source,
    plankton_mirrors,
)
from stn.data.plankton.task import IMAGE_SIZE, PlanktonTask

CLASSES = 121  # the class folders of the NCEI set


@register_dataset("plankton")
class Plankton(DataSet):
    """PlanktonSet 1.0 (see the module). A run's ``data`` section:

    - ``root``: the folder of the source (tarball, ``train.zip`` or ``classes/``); the prepared
      arrays and the split are cached in ``root/prepared``;
    - ``mirrors``: base URLs of the tarball; ``null`` (the default) means NCEI's; ``[]`` never
      downloads;
    - ``images`` (null: any number), ``classes``: the JPEG files and class folders the source must
      hold; ``image_size``: the side of the prepared squares;
    - ``test_fraction``, ``split_seed``: the stratified split.
    """

    image_shape = (IMAGE_SIZE, IMAGE_SIZE)
    label_values = CLASSES

    def raw_files(self, data: dict) -> list[Path]:
        return [find_source(data["root"]) or Path(data["root"]) / TARBALL]

    def fetch(self, data: dict, target: Path) -> None:
        target = Path(target)
        if target.name not in SOURCES:
            raise ValueError(f"{target}: not a PlanktonSet source (known: {', '.join(SOURCES)})")
        if target.name == TARBALL:
            download_plankton(target.parent, plankton_mirrors(data))
        elif not target.exists():
            raise DownloadError(f"{target} is missing and cannot be downloaded. {by_hand(target.parent)}")

    def load(self, data: dict) -> Splits:
        return load_plankton(data)

    def train_size(self, data: dict) -> int:
        """From the prepared manifest (the split keeps ``n - round(n * test_fraction)`` of each
        class), else estimated from ``data["images"]`` or the NCEI set's reported size."""
        manifest = plankton_cache(data).read_manifest()
        fraction = data["test_fraction"]
        if manifest is not None and manifest.get("image_size") == data["image_size"] and "counts" in manifest:
            return sum(n - round(n * fraction) for n in manifest["counts"].values())
        return round((data.get("images") or NCEI_IMAGES) * (1 - fraction))

    def task(self, settings: dict) -> PlanktonTask:
        """The task of a resolved ``task`` section (:class:`PlanktonTask`)."""
        fields = {k: v for k, v in settings.items() if k != "log2_scale"}
        return PlanktonTask(log2_scale=tuple(float(v) for v in settings["log2_scale"]), **fields)
