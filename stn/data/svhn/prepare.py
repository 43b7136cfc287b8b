"""SVHN format 1 prepared once into cached uint8 arrays: the Goodfellow et al. (2013) crops of
:mod:`stn.data.svhn.crops`, in the groups ``train`` (train, then extra, in one array) and ``test``.

:func:`prepare_svhn` reads each verified archive as a stream, twice: first its ``digitStruct.mat``
and the list of its PNGs (:func:`_scan`), then the images, cropped into the group's arrays. The
arrays and their manifest are written atomically (:class:`stn.data.prepared.ArrayCache`);
:func:`load_prepared` opens them memory-mapped.
"""

from __future__ import annotations

import gzip
import logging
import re
import sys
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from stn.data.prepared import ArrayCache, check_arrays
from stn.data.svhn.archives import DEFAULT_SPLITS, SVHN_FILES, SVHNArchive, download_svhn, expected_archive
from stn.data.svhn.crops import (
    CROP_SIZE,
    ENLARGE,
    MAX_DIGITS,
    NO_DIGIT,
    all_sequence_labels,
    crop_and_resize,
    crop_box,
    decode_png,
    length_filter,
)
from stn.data.svhn.digit_struct import DigitStruct, SVHNFormatError, read_digit_struct

logger = logging.getLogger(__name__)

# The prepared groups and the splits each is made of, in this order: the training set is train
# followed by extra, in one array (Goodfellow et al. and the authors train on both); the test set
# is test.
GROUPS: dict[str, tuple[str, ...]] = {"train": ("train", "extra"), "test": ("test",)}
SPLIT_NAMES: tuple[str, ...] = tuple(s for members in GROUPS.values() for s in members)
_PNG = re.compile(r"([1-9][0-9]*)\.png")
_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


@dataclass(frozen=True)
class _Scanned:
    """One archive after the first pass: its boxes, which images are kept, their labels."""

    archive: SVHNArchive
    path: Path
    digits: DigitStruct
    keep: np.ndarray  # bool [N]
    dropped: int  # more than MAX_DIGITS digits
    no_digits: int  # no box at all (also not kept)
    labels: np.ndarray  # uint8 [kept, MAX_DIGITS]


def _member(member: tarfile.TarInfo, split: str) -> str | None:
    """The file name of a regular file directly in the archive's ``split`` folder, else ``None``.

    Nothing is ever extracted under a member's name, so names like ``../x`` or absolute paths
    cannot write anywhere; they are simply not SVHN files."""
    if not member.isfile():
        return None
    parts = [p for p in PurePosixPath(member.name).parts if p != "."]
    if len(parts) != 2 or parts[0] != split:
        return None
    return parts[1]


def _broken_archive(path: Path, err: BaseException) -> SVHNFormatError:
    return SVHNFormatError(
        f"{path}: not a complete, readable .tar.gz archive ({type(err).__name__}: {err}); delete it and "
        "rerun to download it again (if it recurs, the size and SHA-256 it was verified against are "
        "those of a broken file)"
    )


def _scan(archive: SVHNArchive, path: Path, work: Path, workers: int | None) -> _Scanned:
    """First pass over an archive: copy its ``digitStruct.mat`` into ``work``, list its PNGs, parse
    the boxes and check that they describe exactly the images present."""
    split = archive.split
    mat = work / f"{split}-digitStruct.mat"
    numbers: list[int] = []
    found = False
    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                name = _member(member, split)
                if name == "digitStruct.mat":
                    source = tar.extractfile(member)
                    with open(mat, "wb") as out:
                        while chunk := source.read(1 << 20):
                            out.write(chunk)
                    found = True
                elif name is not None and (m := _PNG.fullmatch(name)):
                    numbers.append(int(m.group(1)))
    except _TAR_ERRORS as err:
        raise _broken_archive(path, err) from err
    redownload = f"delete {path} and rerun to download it again"
    if not found:
        raise SVHNFormatError(
            f"{path}: no {split}/digitStruct.mat in the archive, so it is not an SVHN format-1 {split} "
            f"archive; {redownload}"
        )
    n = len(numbers)
    if sorted(numbers) != list(range(1, n + 1)):
        missing = sorted(set(range(1, max(numbers, default=0) + 1)) - set(numbers))[:5]
        raise SVHNFormatError(
            f"{path}: the images of {split}/ are not 1.png ... {n}.png (missing {missing}, or repeated); "
            f"{redownload}"
        )
    if n != archive.images:
        raise SVHNFormatError(f"{path}: {n} images in {split}/, expected {archive.images}; {redownload}")
    fix = f"the archive is broken or of another version: {redownload}"
    try:
        digits = read_digit_struct(mat, expected=n, workers=workers, fix=fix)
    except SVHNFormatError as err:
        message = str(err).replace(str(mat), f"{path} ({split}/digitStruct.mat)")
        raise SVHNFormatError(message) from err
    keep, dropped = length_filter(digits)
    no_digits = int(np.count_nonzero(digits.counts == 0))
    labels = all_sequence_labels(digits)[keep].astype(np.uint8)
    return _Scanned(archive, path, digits, keep, dropped, no_digits, labels)


def _crop_split(scanned: _Scanned, images: np.ndarray, offset: int, bar: tqdm) -> None:
    """Second pass: decode each kept image of the archive, crop it and write it to its row."""
    path, split, digits, keep = scanned.path, scanned.archive.split, scanned.digits, scanned.keep
    rows = offset + np.cumsum(keep) - 1
    done = 0
    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                name = _member(member, split)
                m = _PNG.fullmatch(name) if name else None
                if m is None or not keep[i := int(m.group(1)) - 1]:
                    continue
                where = f"{path} ({split}/{name})"
                image = decode_png(tar.extractfile(member).read(), where)
                try:
                    box = crop_box(digits.boxes(i), image.shape[1], image.shape[0])
                except ValueError as err:
                    raise SVHNFormatError(
                        f"{where}: no crop for the boxes of digitStruct.mat row {i} ({err}); the archive is "
                        "broken or of another version: delete it and rerun to download it again"
                    ) from err
                images[rows[i]] = crop_and_resize(image, box)
                done += 1
                bar.update()
    except _TAR_ERRORS as err:
        raise _broken_archive(path, err) from err
    if done != int(keep.sum()):  # the archive changed between the two passes
        raise SVHNFormatError(f"{path}: {done} images cropped, expected {int(keep.sum())}; rerun")


def _cached(cache: ArrayCache, archives: Sequence[SVHNArchive]) -> dict | None:
    """The manifest of the group ``cache.name`` where it and its arrays are the preparation of
    exactly ``archives``."""

    def made_from_them(manifest: dict) -> bool:
        return (
            manifest["group"] == cache.name
            and [(a["split"], a["sha256"]) for a in manifest["archives"]]
            == [(a.split, a.sha256) for a in archives]
            and (manifest["crop_size"], manifest["enlarge"], manifest["max_digits"])
            == (CROP_SIZE, ENLARGE, MAX_DIGITS)
        )

    return cache.fresh(made_from_them)


def _write_group(cache: ArrayCache, scanned: Sequence[_Scanned], work: Path, progress: bool) -> dict:
    """Crop the scanned archives of the group ``cache.name`` into its arrays in ``work`` and commit
    them with the manifest."""
    group = cache.name
    total = sum(int(s.keep.sum()) for s in scanned)
    images = np.lib.format.open_memmap(
        work / cache.file("images"), mode="w+", dtype=np.uint8, shape=(total, CROP_SIZE, CROP_SIZE, 3)
    )
    entries, offset = [], 0
    with tqdm(total=total, desc=f"SVHN {group} crops", unit="img", disable=not progress) as bar:
        for s in scanned:
            _crop_split(s, images, offset, bar)
            kept = int(s.keep.sum())
            entries.append(
                {
                    "split": s.archive.split,
                    "archive": s.archive.name,
                    "size": s.archive.size,
                    "sha256": s.archive.sha256,
                    "images": len(s.digits),
                    "kept": kept,
                    "dropped": s.dropped,
                    "no_digits": s.no_digits,
                    "offset": offset,
                }
            )
            offset += kept
    images.flush()
    del images
    labels = np.concatenate([s.labels for s in scanned]) if scanned else np.zeros((0, MAX_DIGITS), np.uint8)
    np.save(work / cache.file("labels"), labels)
    fields = {
        "dataset": "svhn-format1",
        "group": group,
        "count": total,
        "dropped": sum(s.dropped for s in scanned),
        "no_digits": sum(s.no_digits for s in scanned),
        "crop_size": CROP_SIZE,
        "enlarge": ENLARGE,
        "max_digits": MAX_DIGITS,
        "no_digit_label": NO_DIGIT,
        "archives": entries,
    }
    return cache.commit(work, fields)


def _prepare_group(
    cache: ArrayCache,
    archives: Sequence[SVHNArchive],
    paths: Mapping[str, Path],
    workers: int | None,
    progress: bool,
) -> dict:
    """Scan the group's verified archives (at ``paths``, by split), then write its cache."""
    with cache.rebuild() as work:
        scanned = [_scan(a, paths[a.split], work, workers) for a in archives]
        for s in scanned:
            _say(
                f"SVHN {s.archive.split}: {int(s.keep.sum())} of {len(s.digits)} images kept, "
                f"{s.dropped} dropped for more than {MAX_DIGITS} digits"
                + (f", {s.no_digits} without digits" if s.no_digits else ""),
                progress,
            )
        return _write_group(cache, scanned, work, progress)


def _say(message: str, progress: bool) -> None:
    logger.info(message)
    if progress:
        print(message, file=sys.stderr)


def _groups(splits: Sequence[str], files: Mapping[str, SVHNArchive]) -> dict[str, tuple[str, ...]]:
    """The groups with a requested split, each with its requested splits, in :data:`GROUPS` order."""
    for split in splits:
        expected_archive(files, split)
    if set(splits) - set(SPLIT_NAMES):
        raise ValueError(f"splits must be among {list(SPLIT_NAMES)}, got {list(splits)}")
    wanted = {g: tuple(s for s in members if s in splits) for g, members in GROUPS.items()}
    return {g: members for g, members in wanted.items() if members}


def prepare_svhn(
    root: Path | str,
    out_dir: Path | str | None = None,
    splits: Sequence[str] = DEFAULT_SPLITS,
    *,
    files: Mapping[str, SVHNArchive] = SVHN_FILES,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
    timeout: float = 60,
    attempts: int = 3,
    workers: int | None = None,
) -> dict[str, dict]:
    """Prepare SVHN format 1 once into cached uint8 arrays: the Goodfellow et al. (2013) crops.

    The archives of ``splits`` are fetched into ``root`` and verified (:func:`download_svhn`;
    ``mirrors=()`` for offline use). Each group of :data:`GROUPS` with a requested split, ``train``
    (train, then extra) and ``test``, is written to ``out_dir`` (default ``root / "prepared"``):

    - ``<group>_images.npy``: uint8 ``[N, 64, 64, 3]``, each image's union box enlarged by 30% in
      x and y, cropped (zeros outside the image) and resized (:func:`crop_and_resize`);
    - ``<group>_labels.npy``: uint8 ``[N, 5]``, the digits 0-9 left to right, 10 = no digit;
    - ``<group>.json``: the manifest: counts, sequences dropped for more than 5 digits, each
      archive's SHA-256 and its rows' offset in the arrays.

    Sequences of more than 5 digits are dropped and counted (logged, and in the manifest). The
    archives are read as streams, twice (first ``digitStruct.mat`` and the list of PNGs, then the
    images): nothing is unpacked to disk under a member's name, so no member can write outside
    ``out_dir``. Every file is written under a temporary folder in ``out_dir`` and renamed into
    place, the manifest last, and an old manifest is deleted before its arrays are replaced: an
    interrupted run leaves no cache that a rerun or :func:`load_prepared` accepts (only a
    ``.<group>-work-*`` folder, never read). A group whose manifest names the same archives (by
    SHA-256) and whose arrays match it is left as it is, without looking at the archives.

    Args:
        files: the expected archives by split (name, size, SHA-256, image count).
        workers: processes that parse each ``digitStruct.mat`` (see :func:`read_digit_struct`).

    Returns:
        The manifest of each requested group.

    Raises:
        stn.data.download.DownloadError: an archive with a wrong size or checksum, or none to get.
        SVHNFormatError: a broken archive, no ``digitStruct.mat``, a PNG that does not decode, or a
            ``digitStruct.mat`` whose rows are not the images; each names the file and the fix.
    """
    root = Path(root)
    out_dir = root / "prepared" if out_dir is None else Path(out_dir)
    wanted = _groups(splits, files)
    result, todo = {}, {}
    for group, members in wanted.items():
        cache, archives = ArrayCache(out_dir, group), [files[s] for s in members]
        manifest = _cached(cache, archives)
        if manifest is not None:
            _say(f"SVHN {group}: {cache.manifest_path} is up to date", progress)
            result[group] = manifest
        else:
            todo[group] = (cache, archives)
    if todo:
        paths = download_svhn(
            root,
            [a.split for _, archives in todo.values() for a in archives],
            files=files,
            mirrors=mirrors,
            progress=progress,
            timeout=timeout,
            attempts=attempts,
        )
        for group, (cache, archives) in todo.items():
            result[group] = _prepare_group(cache, archives, paths, workers, progress)
    return {g: result[g] for g in wanted}


def load_prepared(out_dir: Path | str, group: str, mode: str = "r") -> tuple[np.ndarray, np.ndarray]:
    """The prepared ``group`` (``"train"``: train then extra in one array; ``"test"``) as
    read-only memory maps: images uint8 ``[N, 64, 64, 3]`` and labels uint8 ``[N, 5]`` (10 = no
    digit). Nothing is read into memory until indexed.

    ``mode`` is :func:`numpy.load`'s ``mmap_mode``: ``"r"`` (read-only) or ``"c"`` (copy on write:
    writable arrays whose writes stay in memory and never reach the files, as
    :func:`torch.from_numpy` wants them).

    Raises:
        FileNotFoundError: the group is not prepared (or its preparation did not finish).
        SVHNFormatError: its arrays do not match its manifest.
    """
    if group not in GROUPS:
        raise ValueError(f"unknown SVHN group {group!r}; known: {', '.join(GROUPS)}")
    cache = ArrayCache(Path(out_dir), group)
    manifest = cache.read_manifest()
    if manifest is None:
        raise FileNotFoundError(
            f"{cache.manifest_path} is missing or unreadable: SVHN {group} is not prepared; "
            "run prepare_svhn first"
        )
    try:
        problem = check_arrays(cache.out_dir, manifest)
    except (KeyError, TypeError) as err:
        problem = f"{cache.manifest_path} is malformed ({err!r})"
    if problem is not None:
        raise SVHNFormatError(
            f"{problem}: the prepared SVHN {group} set is broken; delete "
            f"{cache.manifest_path} and rerun prepare_svhn"
        )
    if mode not in ("r", "c"):
        raise ValueError(f"mode must be 'r' or 'c', got {mode!r}")
    return np.load(cache.path("images"), mmap_mode=mode), np.load(cache.path("labels"), mmap_mode=mode)
