"""PlanktonSet 1.0 prepared once into cached uint8 arrays, and its train/test split.

Verification (nothing is published to check against): the class folders holding JPEGs must number
``data["classes"]`` (121) and, unless ``data["images"]`` is null, the JPEG files ``data["images"]``;
each error says which setting to change if the data are the ones meant. The manifest records the
SHA-256 of the source (of a tree: of its file list, :func:`stn.io.sha256sum`), so a run states its
data.

Decision: an image that does not decode is skipped and counted (listed with the reason in the
manifest, with a warning), not an error; a class left with no readable image is an error.

Preprocessing, the authors' (:func:`preprocess`): inverted (255 - x), scaled so the longest side
fits ``data["image_size"]`` (95) with the aspect ratio kept (antialiased bilinear; small images are
enlarged) and pasted centred on a black square. :func:`prepare_plankton` does it once into cached
uint8 arrays under ``root/prepared`` (images ordered by class name, then path; written atomically,
the manifest last: :class:`stn.data.prepared.ArrayCache`). The train/test split
(:func:`plankton_split`) is seeded and stratified by class, written to
``root/prepared/split-seed<seed>-test<fraction>.csv`` and reused; it selects rows and never changes
the arrays.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from stn.data.base import Splits
from stn.data.plankton.sources import (
    KAGGLE_IMAGES,
    NCEI_IMAGES,
    SOURCES,
    PlanktonFormatError,
    download_plankton,
    find_source,
    plankton_mirrors,
    source_images,
)
from stn.data.prepared import ArrayCache, UndecodableImage, decode_image
from stn.data.split import stratified_split
from stn.io import atomic_write, sha256sum

_COPY_ROWS = 4096


def preprocess(image: np.ndarray, size: int) -> np.ndarray:
    """The authors' preprocessing of a uint8 grayscale image (H, W): inverted (255 - x), scaled
    so that its longest side is ``size`` (sides ``max(1, round(side * size / longest))``, PIL's
    bilinear filter, antialiased when shrinking) and pasted centred on a black ``size x size``
    square (top ``(size - h) // 2``, left ``(size - w) // 2``)."""
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"expected a uint8 (H, W) image, got {image.dtype} {image.shape}")
    h, w = image.shape
    longest = max(h, w)
    new_h, new_w = (max(1, round(side * size / longest)) for side in (h, w))
    scaled = Image.fromarray(255 - image).resize((new_w, new_h), Image.Resampling.BILINEAR)
    out = np.zeros((size, size), np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = np.asarray(scaled)
    return out


def plankton_cache(data: Mapping) -> ArrayCache:
    """The prepared arrays of a ``data`` section: ``root/prepared/plankton_images.npy``,
    ``plankton_labels.npy`` and the manifest ``plankton.json``."""
    return ArrayCache(Path(data["root"]) / "prepared", "plankton")


def _verify(where: Path, classes: Sequence[str], files: int, data: Mapping) -> None:
    """Check the class and image counts of a source against the ``data`` section."""
    if len(classes) != data["classes"]:
        raise PlanktonFormatError(
            f"{where}: {len(classes)} class folders hold JPEG images "
            f"({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}), expected {data['classes']}; "
            f"if this is the data you mean, set classes: {len(classes)} in the data set's config"
        )
    if data.get("images") is not None and files != data["images"]:
        raise PlanktonFormatError(
            f"{where}: {files} JPEG files, expected {data['images']}; if this is the data you mean, set "
            f"images: {files} in the data set's config (the NCEI set is reported to hold {NCEI_IMAGES:,}, "
            f"Kaggle's train.zip {KAGGLE_IMAGES:,})"
        )
    if len(classes) > 256:
        raise PlanktonFormatError(f"{where}: {len(classes)} classes; the labels are stored as uint8 (<= 256)")


def _decode_all(
    source: Path, size: int, unsorted: Path, progress: bool
) -> tuple[list[tuple[str, str]], Counter[str], list[dict[str, str]]]:
    """Decode and preprocess each image of ``source``, in its order, into the rows of the raw
    uint8 file ``unsorted``: the (class, path) of each row, the JPEG files of each class and the
    images that do not decode (path, reason)."""
    keys: list[tuple[str, str]] = []
    files: Counter[str] = Counter()
    skipped = []
    with (
        open(unsorted, "wb") as out,
        tqdm(desc="PlanktonSet images", unit="img", disable=not progress) as bar,
    ):
        for path, label, blob in source_images(source):
            files[label] += 1
            try:
                image = decode_image(blob, "L")
            except UndecodableImage as err:
                skipped.append({"path": path, "reason": str(err)})
            else:
                out.write(preprocess(image, size).tobytes())
                keys.append((label, path))
            bar.update()
    return keys, files, skipped


def _prepare(source: Path, digest: str, data: Mapping, cache: ArrayCache, work: Path, progress: bool) -> dict:
    """Decode and preprocess every image of ``source`` into ``work``, verify the counts, then
    commit the arrays, rows sorted by (class, path), with their manifest."""
    size = data["image_size"]
    unsorted = work / "unsorted.u8"
    keys, files, skipped = _decode_all(source, size, unsorted, progress)
    classes = sorted(files)
    _verify(source, classes, files.total(), data)
    counts = Counter(label for label, _ in keys)
    empty = [c for c in classes if not counts[c]]
    if empty:
        raise PlanktonFormatError(
            f"{source}: no image of the classes {empty} decodes; the source is broken: replace it "
            "(delete the tarball and rerun to download it again)"
        )
    if skipped:
        print(
            f"warning: {len(skipped)} PlanktonSet images of {source} do not decode and were skipped "
            f"(listed in {cache.manifest_path})",
            file=sys.stderr,
        )

    order = sorted(range(len(keys)), key=keys.__getitem__)
    rows = np.memmap(unsorted, np.uint8, mode="r", shape=(len(keys), size, size))
    images = np.lib.format.open_memmap(work / cache.file("images"), "w+", np.uint8, (len(keys), size, size))
    for start in range(0, len(order), _COPY_ROWS):
        images[start : start + _COPY_ROWS] = rows[order[start : start + _COPY_ROWS]]
    images.flush()
    del images, rows
    index = {c: i for i, c in enumerate(classes)}
    np.save(work / cache.file("labels"), np.array([index[keys[i][0]] for i in order], np.uint8))
    fields = {
        "dataset": "PlanktonSet 1.0 (NOAA NCEI accession 0127422)",
        "source": {"kind": SOURCES[source.name], "path": source.name, "sha256": digest},
        "image_size": size,
        "classes": classes,
        "files": files.total(),
        "counts": {c: counts[c] for c in classes},
        "skipped": skipped,
        "paths": [keys[i][1] for i in order],
    }
    return cache.commit(work, fields)


def prepare_plankton(data: Mapping, *, progress: bool = True) -> dict:
    """Prepare the source of a ``data`` section once into ``root/prepared``; return its manifest.

    The source is the first present (:func:`stn.data.plankton.sources.find_source`), else the NCEI
    tarball, downloaded. A cache prepared from the same source (same SHA-256) at the same
    ``image_size``, whose arrays match its manifest, is reused without decoding anything. Otherwise
    the old manifest is removed and the images are decoded, preprocessed (:func:`preprocess`) and
    written atomically: ``plankton_images.npy`` uint8 (N, S, S), ``plankton_labels.npy`` uint8 (N,)
    (the class's position in sorted order), rows ordered by class name, then path; and
    ``plankton.json``: the source (kind, path, SHA-256), the settings, the class names, the files
    found, the images per class, the skipped images (path, reason), each row's path and the arrays
    (shapes, bytes).

    Raises:
        PlanktonFormatError: the source's counts differ from ``data["classes"]`` or
            ``data["images"]``, an archive is broken, or a class has no readable image.
        stn.data.download.DownloadError: no source is present and the download failed.
    """
    root = Path(data["root"])
    source = find_source(root) or download_plankton(root, plankton_mirrors(data), progress=progress)
    digest = sha256sum(source)
    cache = plankton_cache(data)

    def made_from_it(manifest: dict) -> bool:
        recorded = manifest["source"]["kind"], manifest["source"]["sha256"], manifest["image_size"]
        return recorded == (SOURCES[source.name], digest, data["image_size"])

    manifest = cache.fresh(made_from_it)
    if manifest is not None:
        _verify(source, manifest["classes"], manifest["files"], data)
        return manifest
    with cache.rebuild() as work:
        return _prepare(source, digest, data, cache, work, progress)


def split_path(data: Mapping) -> Path:
    """The CSV of a ``data`` section's train/test split."""
    return plankton_cache(data).out_dir / f"split-seed{data['split_seed']}-test{data['test_fraction']}.csv"


def _read_split(path: Path, rows: list[tuple[str, str]]) -> np.ndarray | None:
    """The test mask a split CSV gives, where it lists exactly ``rows`` (path, class) in order."""
    try:
        with open(path, newline="") as f:
            table = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    header, *body = table or [[]]
    if (
        header != ["path", "class", "subset"]
        or [tuple(r[:2]) for r in body] != rows
        or any(len(r) != 3 or r[2] not in ("train", "test") for r in body)
    ):
        return None
    return np.array([r[2] == "test" for r in body], bool)


def plankton_split(data: Mapping, manifest: Mapping, labels: np.ndarray) -> np.ndarray:
    """Which prepared rows are test images (a bool mask): from the split CSV (:func:`split_path`)
    where it lists exactly the prepared images, else drawn by
    :func:`stn.data.split.stratified_split` with ``data["test_fraction"]`` and
    ``data["split_seed"]`` and written there atomically (columns path, class, subset)."""
    path = split_path(data)
    rows = [
        (p, manifest["classes"][label]) for p, label in zip(manifest["paths"], labels.tolist(), strict=True)
    ]
    test = _read_split(path, rows)
    if test is None:
        test = np.zeros(len(rows), bool)
        test[stratified_split(labels, data["test_fraction"], data["split_seed"])[1]] = True

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                out = csv.writer(f)
                out.writerow(["path", "class", "subset"])
                out.writerows((p, c, "test" if t else "train") for (p, c), t in zip(rows, test, strict=True))

        atomic_write(path, write)
    return test


def load_plankton(data: Mapping, *, progress: bool = True) -> Splits:
    """The split prepared images (:func:`prepare_plankton`, :func:`plankton_split`): uint8
    (N, S, S) with int64 labels, train and test rows each in the arrays' order."""
    manifest = prepare_plankton(data, progress=progress)
    cache = plankton_cache(data)
    images = np.load(cache.path("images"), mmap_mode="r")
    labels = np.load(cache.path("labels"))
    test = plankton_split(data, manifest, labels)
    out = []
    for rows in (np.flatnonzero(~test), np.flatnonzero(test)):
        out += [torch.from_numpy(np.asarray(images[rows])), torch.from_numpy(labels[rows].astype(np.int64))]
    return Splits(*out)
