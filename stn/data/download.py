"""Verified downloads of raw data files from a list of mirrors.

A file is verified by its MD5, its SHA-256 and its size in bytes, each where the
:class:`RemoteFile` gives it. A file that is already present and verifies is used as is, without
touching the network, so raw files can be placed by hand on offline machines. A gzip file can also be
verified by the MD5 of its decompressed content (``RemoteFile.content_md5``), so the same data
re-compressed, or not compressed at all (the name without ``.gz``), is accepted too. A file with no
published checksum names instead what verifies it later (``RemoteFile.verified_by``, e.g. its
structure, which the caller checks): it is accepted as is, present or downloaded (only a known size is
checked).

Downloads are streamed into a temporary ``.part`` file in the target directory, verified, and
atomically renamed, so a partial or corrupt file never appears under the final name. A transfer
that breaks off (fewer bytes than announced, a reset connection, a timeout) is tried again, up to
``attempts`` times per mirror: it resumes where it broke off (an HTTP ``Range`` request) where the
server supports that, else starts again. An HTTP 429, 500, 502, 503 or 504 answer (a busy or flaky
server) is tried again too, within the same ``attempts``, after a wait: ``backoff * 2 ** (attempt - 1)``
seconds, or the server's integer ``Retry-After``, at most ``max_wait``; the bytes already received are
kept, so the next try resumes. A download without ``Content-Length`` works and shows its progress in
bytes. A ``.part`` file left by a killed process is never read, only its finished, verified copy.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from stn.io import create_temp_file

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """A file on a mirror: ``name`` relative to the mirror base URL, expected ``md5`` hex digest.

    ``content_md5``, for a gzip file (``name`` ending in ``.gz``): the MD5 of its decompressed
    content, which also verifies a re-compressed copy or the uncompressed file (:attr:`raw_name`).

    ``sha256`` (hex digest) and ``size`` (bytes), where given, must match too; a file may be given
    by its SHA-256 alone (``md5=None``). A known ``size`` also lets a download stop at once when a
    mirror announces another length.

    ``verified_by``, for a file with no published checksum (no ``md5`` and no ``sha256``): a short
    phrase saying what verifies it later, e.g. "its structure: 121 class folders of JPEGs", which
    the caller checks. Such a file is accepted as is, present or downloaded; only a known ``size``
    is checked.
    """

    name: str
    md5: str | None = None
    content_md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    verified_by: str | None = None

    def __post_init__(self) -> None:
        if not self.md5 and not self.sha256 and not self.verified_by:
            raise ValueError(
                f"{self.name}: give an MD5 or a SHA-256 to verify it by, or, for a file with no "
                "published checksum, verified_by: what verifies it later"
            )

    @property
    def has_checksum(self) -> bool:
        """Whether an MD5 or a SHA-256 verifies the file (else only its ``size``, where given)."""
        return bool(self.md5 or self.sha256)

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
# HTTP answers of a busy or flaky server: tried again after a wait
_TRANSIENT_HTTP = frozenset({429, 500, 502, 503, 504})


def md5sum(path: Path) -> str:
    """Return the MD5 hex digest of the file at ``path``, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _digests(path: Path, *, md5: bool = True, sha256: bool = False) -> tuple[str | None, str | None]:
    """The MD5 and SHA-256 of the file at ``path`` (``None`` for one not asked for), in one read."""
    hashes = [hashlib.md5() if md5 else None, hashlib.sha256() if sha256 else None]
    active = [h for h in hashes if h is not None]
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            for h in active:
                h.update(chunk)
    return tuple(None if h is None else h.hexdigest() for h in hashes)  # type: ignore[return-value]


def _whole_file(path: Path, file: RemoteFile) -> tuple[str | None, str | None]:
    """``(problem, md5)``: ``problem`` is ``None`` when ``path``'s size, MD5 and SHA-256 match
    those ``file`` gives, else "has ..., expected ..." naming each value both ways."""
    md5, sha256 = _digests(path, md5=True, sha256=bool(file.sha256))
    got, want = [], []
    ok = True
    if file.size is not None:
        size = path.stat().st_size
        ok &= size == file.size
        got.append(f"{size} bytes")
        want.append(f"{file.size} bytes")
    if file.md5:
        ok &= md5 == file.md5
        got.append(f"MD5 {md5}")
        want.append(f"MD5 {file.md5}")
    if file.sha256:
        ok &= sha256 == file.sha256
        got.append(f"SHA-256 {sha256}")
        want.append(f"SHA-256 {file.sha256}")
    if ok:
        return None, md5
    if file.size is None and not file.sha256:  # MD5 only: the message it always had
        return f"has MD5 {md5}, expected {file.md5}", md5
    return f"has {' and '.join(got)}, expected {' and '.join(want)}", md5


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
    if compressed is None:
        compressed = path.name.endswith(".gz") or not file.raw_name
    if compressed and not file.has_checksum:  # accepted as is; the caller checks its structure
        size = path.stat().st_size
        if file.size is not None and size != file.size:
            return f"has {size} bytes, expected {file.size} bytes"
        return None
    if compressed:
        problem, actual = _whole_file(path, file)
        if problem is None or file.content_md5 is None:
            return problem
    else:
        actual = md5sum(path)
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


class _Part:
    """The ``.part`` file of one download in progress and the digests of the bytes in it, so that
    a transfer that breaks off can go on from ``received`` bytes."""

    def __init__(self, dest: Path) -> None:
        self.path = create_temp_file(dest.parent, f"{dest.name}.", ".part")
        self.reset()

    def reset(self) -> None:
        """Start over: an empty file."""
        with open(self.path, "wb"):
            pass
        self.received = 0
        self.md5 = hashlib.md5()
        self.sha256 = hashlib.sha256()


def _content_range_start(response) -> tuple[int, int | None] | None:
    """``(first byte, total length or None)`` of a 206 response's ``Content-Range``."""
    value = response.headers.get("Content-Range", "")
    unit, _, rest = value.partition(" ")
    span, _, total = rest.partition("/")
    first, _, _ = span.partition("-")
    if unit != "bytes" or not first.isdigit():
        return None
    return int(first), int(total) if total.isdigit() else None


def _download(url: str, file: RemoteFile, dest: Path, part: _Part, *, progress: bool, timeout: float) -> None:
    """Stream ``url`` into ``part`` (resuming after its ``received`` bytes where the server honours
    a ``Range`` request, else from the start), verify it (a file without checksum: only a known
    size), and rename it to ``dest``."""
    request = urllib.request.Request(url)
    if part.received:
        request.add_header("Range", f"bytes={part.received}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        remaining = int(length) if length and length.isdigit() else None
        resumed = part.received > 0 and getattr(response, "status", 200) == 206
        total = None
        if resumed:
            got = _content_range_start(response)
            if got is None or got[0] != part.received:
                resumed = False
            else:
                total = got[1]
        if not resumed:
            if part.received:
                part.reset()
            total = remaining
        elif total is None and remaining is not None:
            total = part.received + remaining
        if file.size is not None and total is not None and total != file.size:
            raise DownloadError(f"the server announces {total} bytes, expected {file.size}")
        with (
            open(part.path, "ab") as out,
            tqdm(
                total=total if total is not None else file.size,
                initial=part.received,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=file.name,
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                part.md5.update(chunk)
                if file.sha256:
                    part.sha256.update(chunk)
                part.received += len(chunk)
                bar.update(len(chunk))
    expected = total if total is not None else file.size
    if expected is not None and part.received < expected:
        raise TruncatedDownload(f"the transfer broke off after {part.received} of {expected} bytes")
    actual = part.md5.hexdigest()
    if file.sha256 or file.size is not None or not file.has_checksum:
        problem = None
        if file.size is not None and part.received != file.size:
            problem = f"size mismatch: expected {file.size} bytes, got {part.received}"
        elif file.sha256 and part.sha256.hexdigest() != file.sha256:
            problem = f"SHA-256 mismatch: expected {file.sha256}, got {part.sha256.hexdigest()}"
        elif file.md5 and actual != file.md5:
            problem = f"MD5 mismatch: expected {file.md5}, got {actual}"
        if problem is not None:
            part.reset()
            raise DownloadError(problem)
    elif actual != file.md5 and verify(part.path, file, compressed=True) is not None:
        content = ""
        if file.content_md5:
            try:
                content = f" (content MD5 {content_md5sum(part.path)}, expected {file.content_md5})"
            except ValueError as err:
                content = f" ({err})"
        part.reset()
        raise DownloadError(f"MD5 mismatch: expected {file.md5}, got {actual}{content}")
    os.replace(part.path, dest)


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


def _is_transient(err: BaseException) -> bool:
    """Whether another try of the same mirror may succeed: a broken-off transfer or a busy server."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code in _TRANSIENT_HTTP
    return isinstance(err, _TRANSIENT)


def _wait(err: BaseException, attempt: int, *, backoff: float, max_wait: float) -> float:
    """Seconds to wait before the try after ``attempt`` failed with ``err``: none after a broken-off
    transfer; after a busy server's answer the integer ``Retry-After`` it sent, else
    ``backoff * 2 ** (attempt - 1)``; at most ``max_wait``."""
    if not isinstance(err, urllib.error.HTTPError):
        return 0.0
    retry_after = (err.headers.get("Retry-After") if err.headers is not None else None) or ""
    wait = int(retry_after.strip()) if retry_after.strip().isdigit() else backoff * 2 ** (attempt - 1)
    return max(0.0, min(wait, max_wait))


def fetch(
    file: RemoteFile,
    root: Path,
    mirrors: Sequence[str],
    *,
    progress: bool = True,
    timeout: float = 60,
    also_in: Sequence[Path | str] = (),
    attempts: int = 3,
    backoff: float = 5.0,
    max_wait: float = 300.0,
) -> Path:
    """Return a verified copy of ``file``, downloading it to ``root / file.name`` from the first
    good mirror when none is present; a mirror whose transfer breaks off, or that answers HTTP 429,
    500, 502, 503 or 504, is tried ``attempts`` times. After such an answer the next try waits
    ``backoff * 2 ** (attempt - 1)`` seconds, or the server's integer ``Retry-After``, at most
    ``max_wait`` seconds (each wait is printed to stderr).

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
    part = _Part(dest)
    try:
        if _from_mirrors(
            file,
            dest,
            part,
            mirrors,
            failures,
            progress=progress,
            timeout=timeout,
            attempts=attempts,
            backoff=backoff,
            max_wait=max_wait,
        ):
            return dest
    finally:
        part.path.unlink(missing_ok=True)
    if file.md5:
        checksum = f"MD5 {file.md5}"
    elif file.sha256:
        checksum = f"SHA-256 {file.sha256}"
    else:
        checksum = f"no published checksum; verified by {file.verified_by}"
    raise DownloadError(
        f"Could not download {file.name} ({checksum}) from any mirror:\n"
        + "\n".join(failures)
        + f"\nYou can place the file at {dest} by hand."
    )


def _from_mirrors(
    file: RemoteFile,
    dest: Path,
    part: _Part,
    mirrors: Sequence[str],
    failures: list[str],
    *,
    progress: bool,
    timeout: float,
    attempts: int,
    backoff: float = 5.0,
    max_wait: float = 300.0,
) -> bool:
    """Try each mirror in turn until one delivers ``file`` to ``dest`` (then ``True``); note each
    failure in ``failures``. A transient failure (see :func:`_is_transient`) is tried again, up to
    ``attempts`` tries per mirror, keeping the bytes in ``part`` so that the next try resumes;
    after a busy server's answer the next try waits (see :func:`_wait`)."""
    for mirror in mirrors:
        url = _url(mirror, file.name)
        if part.received:  # never mix the bytes of two mirrors
            part.reset()
        for attempt in range(1, attempts + 1):
            try:
                _download(url, file, dest, part, progress=progress, timeout=timeout)
            except (OSError, ValueError, http.client.HTTPException, DownloadError) as err:
                if not _is_transient(err):
                    failures.append(f"  {url}: {_reason(err)}")
                    break
                if attempt == attempts:
                    failures.append(f"  {url}: {_reason(err)} ({attempts} tries)")
                    break
                wait = _wait(err, attempt, backoff=backoff, max_wait=max_wait)
                after = f" in {wait:g} s" if wait else ""
                print(
                    f"{url}: {_reason(err)}; trying again{after} ({attempt + 1} of {attempts})",
                    file=sys.stderr,
                )
                if wait:
                    time.sleep(wait)
            else:
                return True
    return False


def fetch_all(
    files: Sequence[RemoteFile],
    root: Path,
    mirrors: Sequence[str],
    *,
    progress: bool = True,
    timeout: float = 60,
    also_in: Sequence[Path | str] = (),
    attempts: int = 3,
    backoff: float = 5.0,
    max_wait: float = 300.0,
) -> list[Path]:
    """Fetch each of ``files`` into ``root`` (see :func:`fetch`); return the paths in order."""
    return [
        fetch(
            f,
            root,
            mirrors,
            progress=progress,
            timeout=timeout,
            also_in=also_in,
            attempts=attempts,
            backoff=backoff,
            max_wait=max_wait,
        )
        for f in files
    ]
