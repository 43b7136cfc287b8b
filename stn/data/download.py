"""Verified downloads of raw data files from a list of mirrors.

A file that is already present with the expected MD5 is used as is, without touching the
network, so raw files can be placed by hand on offline machines. Downloads are streamed into
a temporary ``.part`` file in the target directory, verified, and atomically renamed, so a
partial or corrupt file never appears under the final name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """A file on a mirror: ``name`` relative to the mirror base URL, expected ``md5`` hex digest."""

    name: str
    md5: str


class DownloadError(RuntimeError):
    """A file could not be obtained with the expected checksum."""


def md5sum(path: Path) -> str:
    """Return the MD5 hex digest of the file at ``path``, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _url(mirror: str, name: str) -> str:
    return f"{mirror.rstrip('/')}/{name}"


def _download(url: str, file: RemoteFile, dest: Path, *, progress: bool, timeout: float) -> None:
    """Stream ``url`` into a temporary file next to ``dest``, verify it, and rename it."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f"{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=timeout) as response,
        ):
            length = response.headers.get("Content-Length")
            with tqdm(
                total=int(length) if length and length.isdigit() else None,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=file.name,
                disable=not progress,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        actual = digest.hexdigest()
        if actual != file.md5:
            raise DownloadError(f"MD5 mismatch: expected {file.md5}, got {actual}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"URL error: {err.reason}"
    if isinstance(err, DownloadError):
        return str(err)
    return f"{type(err).__name__}: {err}"


def fetch(
    file: RemoteFile,
    root: Path,
    mirrors: Sequence[str],
    *,
    progress: bool = True,
    timeout: float = 60,
) -> Path:
    """Return ``root / file.name`` with a verified MD5, downloading it from the first good mirror.

    Raises:
        DownloadError: the present file has a wrong MD5, or no mirror delivered a valid file.
    """
    root = Path(root)
    dest = root / file.name
    if dest.exists():
        actual = md5sum(dest)
        if actual == file.md5:
            return dest
        raise DownloadError(
            f"{dest} exists but has MD5 {actual}, expected {file.md5}. "
            "Delete it to download it again, or replace it with the correct file."
        )
    if not mirrors:
        raise DownloadError(f"{dest} is missing and no mirrors were given; place the file there by hand.")
    root.mkdir(parents=True, exist_ok=True)
    failures = []
    for mirror in mirrors:
        url = _url(mirror, file.name)
        try:
            _download(url, file, dest, progress=progress, timeout=timeout)
        except (OSError, ValueError, http.client.HTTPException, DownloadError) as err:
            failures.append(f"  {url}: {_reason(err)}")
        else:
            return dest
    raise DownloadError(
        f"Could not download {file.name} (MD5 {file.md5}) from any mirror:\n"
        + "\n".join(failures)
        + f"\nYou can place the file at {dest} by hand."
    )


def fetch_all(
    files: Sequence[RemoteFile],
    root: Path,
    mirrors: Sequence[str],
    *,
    progress: bool = True,
    timeout: float = 60,
) -> list[Path]:
    """Fetch each of ``files`` into ``root`` (see :func:`fetch`); return the paths in order."""
    return [fetch(f, root, mirrors, progress=progress, timeout=timeout) for f in files]
