"""PlanktonSet 1.0: the labelled plankton images of the 2015 National Data Science Bowl.

Source: Cowen et al. (2015), NOAA NCEI accession 0127422, version 2.3 (DOI 10.7289/v5d21vjd): 121
class folders of grayscale JPEGs of varying size (a third-party mirror reports 60,736 files; Kaggle's
``train.zip`` of the competition holds 30,336 of them).

Placements, looked for in a run's ``data["root"]`` in this order (the first present is used):

- ``127422.2.3.tar.gz``, the NCEI tarball (downloaded there, or placed by hand; any compression);
- ``train.zip``, Kaggle's training archive (placed by hand: Kaggle needs a login);
- ``classes/``, a folder tree ``classes/<class>/<image>.jpg``.

In each, an image is a regular file ending ``.jpg`` or ``.jpeg`` (any case) and its class is the name
of the folder that directly holds it, at any depth (``train/<class>/x.jpg`` in an archive); other
files, links, images outside any folder and members named with ``..`` are ignored. Archive members
are read from the stream, never extracted.

Verification (nothing is published to check against): the class folders holding JPEGs must number
``data["classes"]`` (121) and, unless ``data["images"]`` is null, the JPEG files ``data["images"]``;
each error says which setting to change if the data are the ones meant. The manifest records the
SHA-256 of the source (of a tree: of its file list, :func:`stn.io.sha256sum`), so a run states its
data. A truncated or unreadable archive is an error naming the file and the fix.

Decision: an image that does not decode is skipped and counted (listed with the reason in the
manifest, with a warning), not an error; a class left with no readable image is an error.

Preprocessing, the authors' (:func:`preprocess`): inverted (255 - x), scaled so the longest side
fits ``data["image_size"]`` (95) with the aspect ratio kept (antialiased bilinear; small images are
enlarged) and pasted centred on a black square. :func:`prepare_plankton` does it once into cached
uint8 arrays under ``root/prepared`` (images ordered by class name, then path; written atomically,
the manifest last). The train/test split (:func:`plankton_split`) is seeded and stratified by
class, written to ``root/prepared/split-seed<seed>-test<fraction>.csv`` and reused; it selects rows
and never changes the arrays.

Augmentation (:class:`PlanktonTask`, the authors': rotation U(-180, 180) degrees, shifts U(-10, 10)
pixels of 95, scales 2^U(-log2 1.3, log2 1.3), shear U(-20, 20) degrees, horizontal flips with
probability 0.5): each image is flipped, sheared, scaled, rotated about its centre and translated in
one bilinear warp with zero fill at its stored size, then resized to the network's canvas. The test
set is not augmented.
"""

from __future__ import annotations

import csv
import io
import json
import lzma
import os
import stat
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from stn.data.base import DataSet, Splits, Task, register_dataset
from stn.data.download import DownloadError, RemoteFile, fetch
from stn.data.prepared import check_arrays, fsync
from stn.data.split import stratified_split
from stn.geometry import affine_matrix, invert, warp
from stn.io import atomic_write, sha256sum

PLANKTON_URL = "https://www.ncei.noaa.gov/archive/archive-management-system/OAS/bin/prd/jquery/download/"
TARBALL = "127422.2.3.tar.gz"
KAGGLE_ZIP = "train.zip"
TREE = "classes"
SOURCES: dict[str, str] = {TARBALL: "tarball", KAGGLE_ZIP: "zip", TREE: "tree"}  # name -> kind, in order
NCEI_IMAGES = 60_736  # as a third-party mirror reports the NCEI set
KAGGLE_IMAGES = 30_336
CLASSES = 121
IMAGE_SIZE = 95
DOWNLOAD_ATTEMPTS = 5
DOWNLOAD_BACKOFF = 30.0  # seconds before the second try after HTTP 429/5xx, doubled each try
MANIFEST_VERSION = 1
IMAGES_FILE, LABELS_FILE, MANIFEST_FILE = "plankton_images.npy", "plankton_labels.npy", "plankton.json"
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError)
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_COPY_ROWS = 4096


class PlanktonFormatError(ValueError):
    """A PlanktonSet source that is broken or not what the run's ``data`` section expects."""


# ---------------------------------------------------------------------------------------------
# Preprocessing


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


def _decode(data: bytes) -> np.ndarray:
    """A JPEG's bytes as uint8 grayscale (H, W)."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L"), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# Sources


def find_source(root: Path | str) -> Path | None:
    """The first source present in ``root`` (see the module), or ``None``."""
    for name in SOURCES:
        path = Path(root) / name
        if path.is_dir() if name == TREE else path.is_file():
            return path
    return None


def _image_path(name: str) -> tuple[str, str] | None:
    """``(path, class)`` of a member or file named ``name`` (relative, ``/``-separated) that is an
    image in a class folder, else ``None``."""
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if len(parts) < 2 or name.startswith("/") or ".." in parts:
        return None
    if not parts[-1].lower().endswith((".jpg", ".jpeg")):
        return None
    return "/".join(parts), parts[-2]


def _broken(source: Path, err: BaseException) -> PlanktonFormatError:
    fix = {
        TARBALL: "delete it and rerun to download it again",
        KAGGLE_ZIP: "delete it and place a complete copy there",
        TREE: "make its files readable",
    }[source.name]
    if source.is_file():
        with open(source, "rb") as f:
            start = f.read(512).lstrip().lower()
        if start.startswith((b"<!doctype html", b"<html", b"<?xml", b"{")):
            fix = (
                "the server sent a page or a message instead of the archive (NCEI prepares its "
                f"on-demand tarballs, and may answer so while it does); read it, {fix} later, or "
                "place the data by hand"
            )
    return PlanktonFormatError(f"{source}: cannot be read completely ({type(err).__name__}: {err}); {fix}")


def _images(source: Path) -> Iterator[tuple[str, str, bytes]]:
    """``(path, class, bytes)`` of each image of a source, in the source's order.

    Raises:
        PlanktonFormatError: a truncated or unreadable archive, or a file of the tree that cannot
            be read; it names the file and the fix.
    """
    try:
        if source.name == TREE:
            for folder, dirs, files in os.walk(source):
                dirs.sort()
                for file in sorted(files):
                    path = Path(folder, file)
                    found = _image_path(path.relative_to(source).as_posix())
                    if found is not None and not path.is_symlink():
                        yield *found, path.read_bytes()
        elif source.name == KAGGLE_ZIP:
            with zipfile.ZipFile(source) as archive:
                for info in archive.infolist():
                    found = _image_path(info.filename)
                    if found is not None and not info.is_dir() and not stat.S_ISLNK(info.external_attr >> 16):
                        yield *found, archive.read(info)
        else:
            with tarfile.open(source, "r|*") as archive:
                for member in archive:
                    found = _image_path(member.name)
                    if found is not None and member.isfile():
                        yield *found, archive.extractfile(member).read()
    except _ARCHIVE_ERRORS as err:
        raise _broken(source, err) from err


def plankton_mirrors(data: Mapping) -> list[str]:
    """The mirrors of a ``data`` section: NCEI's URL for ``null``; ``[]`` never downloads."""
    mirrors = data.get("mirrors")
    return [PLANKTON_URL] if mirrors is None else list(mirrors)


def _by_hand(root: Path) -> str:
    return (
        f"Place the data by hand instead: the NCEI tarball at {root / TARBALL}, or Kaggle's "
        f"train.zip (National Data Science Bowl 2015) at {root / KAGGLE_ZIP} (set images: "
        f"{KAGGLE_IMAGES}), or the class folders under {root / TREE}/ ({TREE}/<class>/<image>.jpg)."
    )


def download_plankton(root: Path | str, mirrors: Sequence[str], *, progress: bool = True) -> Path:
    """The NCEI tarball in ``root``, downloaded from ``mirrors`` unless present (no checksum is
    published: :func:`prepare_plankton` verifies its structure). HTTP 429 and 5xx answers are
    tried again after ``DOWNLOAD_BACKOFF`` seconds, doubled each try.

    Raises:
        stn.data.download.DownloadError: no mirror delivered it; the message says how to place
            the data by hand.
    """
    root = Path(root)
    remote = RemoteFile(TARBALL, verified_by="its structure: class folders of JPEGs (PlanktonSet 1.0)")
    try:
        return fetch(
            remote, root, mirrors, progress=progress, attempts=DOWNLOAD_ATTEMPTS, backoff=DOWNLOAD_BACKOFF
        )
    except DownloadError as err:
        raise DownloadError(f"{err}\n{_by_hand(root)}") from err


# ---------------------------------------------------------------------------------------------
# Preparation into cached arrays


def _out_dir(data: Mapping) -> Path:
    return Path(data["root"]) / "prepared"


def read_manifest(out_dir: Path | str) -> dict | None:
    """The manifest of the prepared arrays, or ``None`` where there is none or it is unreadable."""
    try:
        manifest = json.loads((Path(out_dir) / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _up_to_date(out_dir: Path, kind: str, digest: str, size: int) -> dict | None:
    """The manifest where it and its arrays are the preparation of this source at ``size``."""
    manifest = read_manifest(out_dir)
    try:
        if (
            manifest is None
            or manifest["version"] != MANIFEST_VERSION
            or (manifest["source"]["kind"], manifest["source"]["sha256"]) != (kind, digest)
            or manifest["image_size"] != size
            or check_arrays(out_dir, manifest) is not None
        ):
            return None
    except (KeyError, TypeError):
        return None
    return manifest


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


def _prepare(source: Path, digest: str, data: Mapping, out_dir: Path, work: Path, progress: bool) -> dict:
    """Decode and preprocess every image of ``source`` into ``work``, verify the counts, then move
    the arrays and the manifest (last) into ``out_dir``."""
    size = data["image_size"]
    unsorted = work / "unsorted.u8"
    keys: list[tuple[str, str]] = []  # (class, path) of each row of ``unsorted``
    files: Counter[str] = Counter()
    skipped = []
    with (
        open(unsorted, "wb") as out,
        tqdm(desc="PlanktonSet images", unit="img", disable=not progress) as bar,
    ):
        for path, label, blob in _images(source):
            files[label] += 1
            try:
                image = preprocess(_decode(blob), size)
            except _DECODE_ERRORS as err:
                skipped.append({"path": path, "reason": f"{type(err).__name__}: {err}"})
            else:
                out.write(image.tobytes())
                keys.append((label, path))
            bar.update()
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
            f"(listed in {out_dir / MANIFEST_FILE})",
            file=sys.stderr,
        )

    order = sorted(range(len(keys)), key=keys.__getitem__)
    rows = np.memmap(unsorted, np.uint8, mode="r", shape=(len(keys), size, size))
    images = np.lib.format.open_memmap(work / IMAGES_FILE, "w+", np.uint8, (len(keys), size, size))
    for start in range(0, len(order), _COPY_ROWS):
        images[start : start + _COPY_ROWS] = rows[order[start : start + _COPY_ROWS]]
    images.flush()
    del images, rows
    index = {c: i for i, c in enumerate(classes)}
    np.save(work / LABELS_FILE, np.array([index[keys[i][0]] for i in order], np.uint8))
    manifest = {
        "version": MANIFEST_VERSION,
        "dataset": "PlanktonSet 1.0 (NOAA NCEI accession 0127422)",
        "source": {"kind": SOURCES[source.name], "path": source.name, "sha256": digest},
        "image_size": size,
        "classes": classes,
        "files": files.total(),
        "counts": {c: counts[c] for c in classes},
        "skipped": skipped,
    }
    for key, name, shape in (
        ("images", IMAGES_FILE, [len(keys), size, size]),
        ("labels", LABELS_FILE, [len(keys)]),
    ):
        fsync(work / name)
        manifest[key] = {
            "file": name,
            "shape": shape,
            "dtype": "uint8",
            "bytes": (work / name).stat().st_size,
        }
    manifest["paths"] = [keys[i][1] for i in order]
    (work / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
    fsync(work / MANIFEST_FILE)
    for name in (IMAGES_FILE, LABELS_FILE, MANIFEST_FILE):
        os.replace(work / name, out_dir / name)
    return manifest


def prepare_plankton(data: Mapping, *, progress: bool = True) -> dict:
    """Prepare the source of a ``data`` section once into ``root/prepared``; return its manifest.

    The source is the first present (see the module), else the NCEI tarball, downloaded. A cache
    prepared from the same source (same SHA-256) at the same ``image_size``, whose arrays match its
    manifest, is reused without decoding anything. Otherwise the old manifest is removed and the
    images are decoded, preprocessed (:func:`preprocess`) and written atomically:
    ``plankton_images.npy`` uint8 (N, S, S), ``plankton_labels.npy`` uint8 (N,) (the class's
    position in sorted order), rows ordered by class name, then path; and ``plankton.json``: the
    source (kind, path, SHA-256), the settings, the class names, the files found, the images per
    class, the skipped images (path, reason), the arrays (shapes, bytes) and each row's path.

    Raises:
        PlanktonFormatError: the source's counts differ from ``data["classes"]`` or
            ``data["images"]``, an archive is broken, or a class has no readable image.
        stn.data.download.DownloadError: no source is present and the download failed.
    """
    root = Path(data["root"])
    source = find_source(root) or download_plankton(root, plankton_mirrors(data), progress=progress)
    digest = sha256sum(source)
    out_dir = _out_dir(data)
    manifest = _up_to_date(out_dir, SOURCES[source.name], digest, data["image_size"])
    if manifest is not None:
        _verify(source, manifest["classes"], manifest["files"], data)
        return manifest
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)  # the old cache is stale from here
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".plankton-work-") as work:
        return _prepare(source, digest, data, out_dir, Path(work), progress)


def split_path(data: Mapping) -> Path:
    """The CSV of a ``data`` section's train/test split."""
    return _out_dir(data) / f"split-seed{data['split_seed']}-test{data['test_fraction']}.csv"


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
    images = np.load(_out_dir(data) / IMAGES_FILE, mmap_mode="r")
    labels = np.load(_out_dir(data) / LABELS_FILE)
    test = plankton_split(data, manifest, labels)
    out = []
    for rows in (np.flatnonzero(~test), np.flatnonzero(test)):
        out += [torch.from_numpy(np.asarray(images[rows])), torch.from_numpy(labels[rows].astype(np.int64))]
    return Splits(*out)


# ---------------------------------------------------------------------------------------------
# The task and the data set (stn.data.base)

_DRAWS = ("angle", "scale", "shear", "tx", "ty", "flip")


@dataclass(frozen=True)
class PlanktonTask(Task):
    """The Plankton task: each image flipped horizontally (with probability ``flip``), sheared by
    U(-shear, shear) degrees, scaled by 2^U(lo, hi) (``log2_scale``), rotated about its centre by
    U(-rotation, rotation) degrees and shifted by U(-translation, translation) pixels of the canvas
    per axis, in one bilinear warp with zero fill at the images' stored size, then resized to
    ``canvas`` (antialiased bilinear) where that differs. The test set is not augmented."""

    name: str = "Plankton"
    canvas: int = IMAGE_SIZE
    rotation: float = 0.0
    log2_scale: tuple[float, float] = (0.0, 0.0)
    translation: float = 0.0
    shear: float = 0.0
    flip: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.log2_scale
        checks = {
            "canvas must be an integer >= 8": isinstance(self.canvas, int) and self.canvas >= 8,
            "rotation must be >= 0": self.rotation >= 0,
            "log2_scale must be [lo, hi] with lo <= hi": lo <= hi,
            "translation must be >= 0": self.translation >= 0,
            "shear must lie in [0, 90) degrees": 0 <= self.shear < 90,
            "flip must be a probability in [0, 1]": 0 <= self.flip <= 1,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"task {self.name!r}: " + "; ".join(failed))

    def parameters(self, draws: dict[str, Tensor]) -> dict[str, Tensor]:
        """The transformation of each image from its uniform ``draws``: ``angle`` and ``shear``
        (degrees), ``scale``, ``tx`` and ``ty`` (normalised: pixels * 2 / canvas), ``flip`` (0. or 1.)."""
        shift = self.translation * 2.0 / self.canvas
        lo, hi = self.log2_scale
        return {
            "angle": self.rotation * (2.0 * draws["angle"] - 1.0),
            "scale": 2.0 ** (lo + (hi - lo) * draws["scale"]),
            "shear": self.shear * (2.0 * draws["shear"] - 1.0),
            "tx": shift * (2.0 * draws["tx"] - 1.0),
            "ty": shift * (2.0 * draws["ty"] - 1.0),
            "flip": (draws["flip"] < self.flip).float(),
        }

    def _to_canvas(self, images: Tensor) -> Tensor:
        """Float images (B, 1, S, S) resized to the canvas where S differs from it."""
        if images.shape[-1] == self.canvas:
            return images
        size = (self.canvas, self.canvas)
        return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)

    # the task interface of stn.data.base
    def draw(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> dict[str, Tensor]:
        """Uniform [0, 1) draws, one (B,) tensor per parameter (see :meth:`parameters`)."""
        return {key: torch.rand((batch,), generator=generator, device=device) for key in _DRAWS}

    def render(self, images: Tensor, draws: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Float inputs (B, 1, canvas, canvas) in [0, 1] from uint8 images (B, S, S), and the
        parameters (:meth:`parameters`). No host synchronisation (CUDA graphs)."""
        params = self.parameters(draws)
        warped = warp(images[:, None].float().div_(255.0), invert(self.undo(params)))
        return self._to_canvas(warped).clamp_(0.0, 1.0), params

    def undo(self, params: dict[str, Tensor]) -> Tensor:
        """The warp (B, 2, 3) of a rendered image that returns the unaugmented one: the forward
        map of the content, ``[R(-angle) scale [[1, tan shear], [0, 1]] diag(±1, 1) | (tx, ty)]``
        (the rendering samples the image at its inverse), a reflection where flipped."""
        angle = params["angle"]
        shear = torch.tan(torch.deg2rad(params["shear"]))
        forward = affine_matrix(-angle, params["scale"], shear=shear, tx=params["tx"], ty=params["ty"])
        mirror = torch.stack([1.0 - 2.0 * params["flip"], torch.ones_like(angle)], dim=-1)
        return torch.cat([forward[:, :, :2] * mirror[:, None, :], forward[:, :, 2:]], dim=-1)

    def test_set(self, images: Tensor, labels: Tensor, seed: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """The test images as the network reads them, unaugmented: uint8 (N, 1, canvas, canvas)
        (resized and rounded where the stored size differs), int64 labels and neutral parameters
        (:meth:`undo` gives identities). Deterministic: ``seed`` is unused."""
        n = len(images)
        if images.shape[-1] == self.canvas:
            inputs = images[:, None].clone()
        else:
            inputs = torch.cat(
                [
                    self._to_canvas(batch[:, None].float() / 255.0).mul_(255.0).round_().to(torch.uint8)
                    for batch in images.split(1024)
                ]
            )
        neutral = {key: torch.full((n,), float(key == "scale"), device=images.device) for key in _DRAWS}
        return inputs, labels.long(), neutral


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
            raise DownloadError(f"{target} is missing and cannot be downloaded. {_by_hand(target.parent)}")

    def load(self, data: dict) -> Splits:
        return load_plankton(data)

    def train_size(self, data: dict) -> int:
        """From the prepared manifest (the split keeps ``n - round(n * test_fraction)`` of each
        class), else estimated from ``data["images"]`` or the NCEI set's reported size."""
        manifest = read_manifest(_out_dir(data))
        fraction = data["test_fraction"]
        if manifest is not None and manifest.get("image_size") == data["image_size"] and "counts" in manifest:
            return sum(n - round(n * fraction) for n in manifest["counts"].values())
        return round((data.get("images") or NCEI_IMAGES) * (1 - fraction))

    def task(self, settings: dict) -> PlanktonTask:
        """The task of a resolved ``task`` section (:class:`PlanktonTask`)."""
        fields = {k: v for k, v in settings.items() if k != "log2_scale"}
        return PlanktonTask(log2_scale=tuple(float(v) for v in settings["log2_scale"]), **fields)
