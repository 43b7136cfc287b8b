"""Atomic writes: a reader never sees a half-written file; files that verify themselves."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: Path | str, write: Callable[[Path], Any]) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def save_torch(obj: Any, path: Path | str) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_torch(path: Path | str, map_location: str | torch.device = "cpu") -> Any:
    """Load a file written by :func:`save_torch` (tensors and plain containers only)."""
    return torch.load(path, map_location=map_location, weights_only=True)


class DamagedFileError(RuntimeError):
    """A file is missing, fails its recorded checksum, or cannot be read."""


def sha256sum(path: Path | str) -> str:
    """The SHA-256 of a file; of a folder, the SHA-256 of its manifest: one line
    ``<sha256 of the file>  <path relative to the folder>`` per regular file below it, sorted by
    path (``sha256sum``'s format), so a folder tree is named by its content alone."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
        lines = "".join(f"{sha256sum(p)}  {p.relative_to(path).as_posix()}\n" for p in files)
        return hashlib.sha256(lines.encode()).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def digest_path(path: Path | str) -> Path:
    """The sidecar that records the SHA-256 of ``path`` (``sha256sum -c`` reads it)."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def save_torch_verified(obj: Any, path: Path | str) -> None:
    """:func:`save_torch`, then record the file's SHA-256 beside it, also written atomically."""
    path = Path(path)
    digest_path(path).unlink(missing_ok=True)  # a crash before the new one is written leaves none
    save_torch(obj, path)
    digest = sha256sum(path)
    atomic_write(digest_path(path), lambda tmp: tmp.write_text(f"{digest}  {path.name}\n"))


def load_torch_verified(
    path: Path | str, map_location: str | torch.device = "cpu", *, remedy: str = ""
) -> Any:
    """:func:`load_torch` of a file written by :func:`save_torch_verified`, checked first against
    its recorded SHA-256 (files without a record, from older versions, are only loaded).

    Raises:
        DamagedFileError: the file is missing, does not match its record, or cannot be loaded;
            the message names the file and ends with ``remedy``.
    """
    path = Path(path)
    remedy = f" {remedy}" if remedy else ""
    if not path.is_file():
        raise DamagedFileError(f"{path} is missing.{remedy}")
    record = digest_path(path)
    if record.exists():
        expected = (record.read_text().split() or ["(empty)"])[0]
        actual = sha256sum(path)
        if actual != expected:
            raise DamagedFileError(
                f"{path} is damaged: its SHA-256 is {actual}, but {record} records {expected} "
                f"(size now {path.stat().st_size} bytes).{remedy}"
            )
    try:
        return load_torch(path, map_location)
    except Exception as err:
        raise DamagedFileError(f"{path} cannot be read ({type(err).__name__}: {err}).{remedy}") from err


def save_json(obj: Any, path: Path | str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


@contextmanager
def output_to(log: Path | str) -> Iterator[None]:
    """Send stdout and stderr (progress bars included) to ``log`` within the block."""
    import contextlib

    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        yield
