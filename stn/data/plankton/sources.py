"""The sources of PlanktonSet 1.0: where the images are found, how they are read, the download.

Placements, looked for in a run's ``data["root"]`` in this order (the first present is used):

- ``127422.2.3.tar.gz``, the NCEI tarball (downloaded there, or placed by hand; any compression);
- ``train.zip``, Kaggle's training archive (placed by hand: Kaggle needs a login);
- ``classes/``, a folder tree ``classes/<class>/<image>.jpg``.

In each, an image is a regular file ending ``.jpg`` or ``.jpeg`` (any case) and its class is the name
of the folder that directly holds it, at any depth (``train/<class>/x.jpg`` in an archive); other
files, links, images outside any folder and members named with ``..`` are ignored. Archive members
are read from the stream, never extracted. A truncated or unreadable archive is an error naming the
file and the fix.
"""

from __future__ import annotations

import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath

from stn.data.download import DownloadError, RemoteFile, fetch

PLANKTON_URL = "https://www.ncei.noaa.gov/archive/archive-management-system/OAS/bin/prd/jquery/download/"
TARBALL = "127422.2.3.tar.gz"
KAGGLE_ZIP = "train.zip"
TREE = "classes"
SOURCES: dict[str, str] = {TARBALL: "tarball", KAGGLE_ZIP: "zip", TREE: "tree"}  # name -> kind, in order
NCEI_IMAGES = 60_736  # as a third-party mirror reports the NCEI set
KAGGLE_IMAGES = 30_336
DOWNLOAD_ATTEMPTS = 5
DOWNLOAD_BACKOFF = 30.0  # seconds before the second try after HTTP 429/5xx, doubled each try
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError)


class PlanktonFormatError(ValueError):
    """A PlanktonSet source that is broken or not what the run's ``data`` section expects."""


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


def source_images(source: Path) -> Iterator[tuple[str, str, bytes]]:
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


def by_hand(root: Path) -> str:
    """How to place the data in ``root`` by hand (for the errors where no download helps)."""
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
        raise DownloadError(f"{err}\n{by_hand(root)}") from err
