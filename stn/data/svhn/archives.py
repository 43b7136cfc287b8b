"""The SVHN format-1 archives (whole house numbers): their published sizes, SHA-256 digests and
image counts, and the verified download.

Each archive ``<split>.tar.gz`` holds ``<split>/1.png … <split>/N.png`` and
``<split>/digitStruct.mat`` (:mod:`stn.data.svhn.digit_struct`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stn.data.download import RemoteFile, fetch

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"


@dataclass(frozen=True)
class SVHNArchive:
    """One SVHN format-1 archive: ``name`` under ``base_url``, its size in bytes, SHA-256 hex digest,
    and the number of images (``1.png … images.png``) it holds in the folder :attr:`split`."""

    name: str
    size: int
    sha256: str
    images: int
    base_url: str = SVHN_URL

    @property
    def split(self) -> str:
        """The folder inside the archive (``train``, ``test``, ``extra``)."""
        return self.name.removesuffix(".tar.gz")

    def remote(self) -> RemoteFile:
        """The archive as :func:`stn.data.download.fetch` downloads and verifies it."""
        return RemoteFile(self.name, sha256=self.sha256, size=self.size)


# The checksums were published with the issue. :meth:`SVHNArchive.remote` turns a record into the
# stn.data.download.RemoteFile that fetch verifies by size and SHA-256.
SVHN_FILES: dict[str, SVHNArchive] = {
    "train": SVHNArchive(
        "train.tar.gz", 404141560, "4b17bb33b6cd8f963493168f80143da956f28ec406cc12f8e5745a9f91a51898", 33402
    ),
    "test": SVHNArchive(
        "test.tar.gz", 276555967, "57ac9ceb530e4aa85b55d991be8fc49c695b3d71c6f6a88afea86549efde7fb5", 13068
    ),
    "extra": SVHNArchive(
        "extra.tar.gz", 1955489752, "e857e27d1e65bd1e7d3959b094061777f6506bbc39889a0df3bba6a729d60f9c", 202353
    ),
}

DEFAULT_SPLITS: tuple[str, ...] = ("train", "extra", "test")
"""The splits a run uses unless it names its own."""


def expected_archive(files: Mapping[str, SVHNArchive], split: str) -> SVHNArchive:
    """The expected archive of ``split``; a ``ValueError`` naming the known splits if none."""
    if split not in files:
        raise ValueError(f"unknown SVHN split {split!r}; known: {', '.join(files)}")
    return files[split]


def download_svhn(
    root: Path | str,
    splits: Sequence[str] = DEFAULT_SPLITS,
    *,
    files: Mapping[str, SVHNArchive] = SVHN_FILES,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
    timeout: float = 60,
    attempts: int = 3,
) -> dict[str, Path]:
    """Fetch the archives of ``splits`` into ``root``, each verified by its size and SHA-256.

    An archive already in ``root`` (placed by hand, or downloaded before) is verified and used
    without touching the network. Otherwise it is downloaded from the first of ``mirrors`` (by
    default each archive's ``base_url``, http://ufldl.stanford.edu/housenumbers/) that delivers it,
    with a progress bar; a transfer that breaks off is resumed or tried again ``attempts`` times
    (see :func:`stn.data.download.fetch`), and never appears under the final name unverified.

    Args:
        files: the expected archives by split; replace them to verify other (e.g. generated) ones.

    Returns:
        The path of each split's archive.

    Raises:
        stn.data.download.DownloadError: a present archive with another size or checksum (the
            error names the file, both checksums and the fix), or no mirror delivered it.
    """
    root = Path(root)
    out = {}
    for split in splits:
        archive = expected_archive(files, split)
        out[split] = fetch(
            archive.remote(),
            root,
            (archive.base_url,) if mirrors is None else mirrors,
            progress=progress,
            timeout=timeout,
            attempts=attempts,
        )
    return out
