"""Verified downloads of raw data files from a list of mirrors.

A file that is already present with the expected MD5 is used as is, without touching the
network, so raw files can be placed by hand on offline machines. A gzip file can also be
verified by the MD5 of its decompressed content (``RemoteFile.content_md5``), so the same data
re-compressed, or not compressed at all (the name without ``.gz``), is accepted too.

Downloads are streamed into a temporary ``.part`` file in the target directory, verified, and
atomically renamed, so a partial or corrupt file never appears under the final name. A transfer
that breaks off (fewer bytes than announced, a reset connection, a timeout) is tried again from
the start, up to ``attempts`` times per mirror; a ``.part`` file left by a killed process is
never read, only its finished, verified copy.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """A file on a mirror: ``name`` relative to the mirror base URL, expected ``md5`` hex digest.

    ``content_md5``, for a gzip file (``name`` ending in ``.gz``): the MD5 of its decompressed
    content, which also verifies a re-compressed copy or the uncompressed file (:attr:`raw_name`).
    """

    name: str
    md5: str
    content_md5: str | None = None

    @property
    def raw_name(self) -> str | None:
        """The name of the uncompressed file, when it can be verified by its content."""
        if self.content_md5 and self.name.endswith(".gz"):
            return self.name.removesuffix(".gz")
        return None


class DownloadError(RuntimeError):
    """A file could not be obtained with the expected checksum."""


class TruncatedDownload(DownloadError):
    """The server sent fewer bytes than it announced."""


# failures of one transfer that another try of the same mirror may not have
_TRANSIENT = (TruncatedDownload, http.client.IncompleteRead, ConnectionError, TimeoutError)


def md5sum(path: Path) -> str:
    """Return the MD5 hex digest of the file at ``path``, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_md5sum(path: Path) -> str:
    """The MD5 of the decompressed content of the gzip file at ``path``.

    Raises:
        ValueError: the file is not a valid gzip file.
    """
    digest = hashlib.md5()
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise ValueError(f"not a valid gzip file ({err})") from err
    return digest.hexdigest()


def verify(path: Path, file: RemoteFile, *, compressed: bool | None = None) -> str | None:
    """``None`` when ``path`` holds ``file``'s data, else why not (with both checksums).

    ``path`` is the archive or, where ``compressed`` is false, the uncompressed file (by default
    told by its name)."""
    actual = md5sum(path)
    if compressed is None:
        compressed = path.name.endswith(".gz") or not file.raw_name
    if compressed and actual == file.md5:
        return None
    if file.content_md5 is None:
        return f"has MD5 {actual}, expected {file.md5}"
    if compressed:
        try:
            content = content_md5sum(path)
        except ValueError as err:
            content = str(err)
        else:
            if content == file.content_md5:
                return None
        return (
            f"has MD5 {actual} and content MD5 {content}; expected MD5 {file.md5} "
            f"or content MD5 {file.content_md5} (of the decompressed data)"
        )
    if actual == file.content_md5:
        return None
    return f"has MD5 {actual}, expected {file.content_md5} (uncompressed) or a gzip file with MD5 {file.md5}"


def candidates(file: RemoteFile, directories: Iterable[Path]) -> list[Path]:
    """Where ``file`` may already be, in order of preference: each directory's archive, then
    its uncompressed file."""
    names = [file.name] + ([file.raw_name] if file.raw_name else [])
    return [Path(d) / name for d in directories for name in names]


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
                received = 0
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
                    received += len(chunk)
        if length and length.isdigit() and received < int(length):
            raise TruncatedDownload(f"the transfer broke off after {received} of {length} bytes")
        actual = digest.hexdigest()
        if actual != file.md5 and verify(tmp, file, compressed=True) is not None:
            content = ""
            if file.content_md5:
                try:
                    content = f" (content MD5 {content_md5sum(tmp)}, expected {file.content_md5})"
                except ValueError as err:
                    content = f" ({err})"
            raise DownloadError(f"MD5 mismatch: expected {file.md5}, got {actual}{content}")
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
    if isinstance(err, http.client.IncompleteRead):
        return f"the transfer broke off after {len(err.partial)} bytes"
    return f"{type(err).__name__}: {err}"


def fetch(
    file: RemoteFile,
    root: Path,
    mirrors: Sequence[str],
    *,
    progress: bool = True,
    timeout: float = 60,
    also_in: Sequence[Path | str] = (),
    attempts: int = 3,
) -> Path:
    """Return a verified copy of ``file``, downloading it to ``root / file.name`` from the first
    good mirror when none is present; a mirror whose transfer breaks off is tried ``attempts``
    times.

    Present copies are looked for in ``root``, then in each of ``also_in``: the archive
    ``file.name``, then the uncompressed :attr:`RemoteFile.raw_name`. The first one present is
    verified and returned.

    Raises:
        DownloadError: the present file has a wrong checksum, or no mirror delivered a valid file.
    """
    root = Path(root)
    dest = root / file.name
    places = candidates(file, [root, *map(Path, also_in)])
    for present in places:
        if present.exists():
            problem = verify(present, file)
            if problem is None:
                return present
            raise DownloadError(
                f"{present} exists but {problem}. "
                "Delete it to download it again, or replace it with the correct file."
            )
    if not mirrors:
        raise DownloadError(
            f"{dest} is missing and no mirrors were given; place the file there by hand. Looked for: "
            + ", ".join(map(str, places))
        )
    root.mkdir(parents=True, exist_ok=True)
    failures = []
    for mirror in mirrors:
        url = _url(mirror, file.name)
        for attempt in range(1, attempts + 1):
            try:
                _download(url, file, dest, progress=progress, timeout=timeout)
            except _TRANSIENT as err:
                if attempt < attempts:
                    print(
                        f"{url}: {_reason(err)}; trying again ({attempt + 1} of {attempts})", file=sys.stderr
                    )
                    continue
                failures.append(f"  {url}: {_reason(err)} ({attempts} tries)")
            except (OSError, ValueError, http.client.HTTPException, DownloadError) as err:
                failures.append(f"  {url}: {_reason(err)}")
            else:
                return dest
            break
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
    also_in: Sequence[Path | str] = (),
    attempts: int = 3,
) -> list[Path]:
    """Fetch each of ``files`` into ``root`` (see :func:`fetch`); return the paths in order."""
    return [
        fetch(f, root, mirrors, progress=progress, timeout=timeout, also_in=also_in, attempts=attempts)
        for f in files
    ]
