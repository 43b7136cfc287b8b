"""Atomic writes: a reader never sees a half-written file; files that verify themselves.

Every file is created with the mode a plain ``open()`` gives it (``0o666`` less the umask, or the
folder's default ACL), and a write that runs out of space (a full disk, a quota, a file-size limit)
raises :class:`DiskFullError`, leaving the file it would have replaced as it was.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

FULL_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""Errors of a write that ran out of space: a full disk, a quota, a file-size limit."""


class DiskFullError(OSError):
    """A write ran out of space; the message names the file, the bytes it needed and the fix."""


def disk_full_error(path: Path, err: OSError, needed: int, *, exact: bool) -> DiskFullError:
    """The :class:`DiskFullError` of a failed write of ``path`` that needed ``needed`` bytes
    (``exact``: the whole file's size; else the size it had reached, so more were needed)."""
    try:
        free = f", {shutil.disk_usage(path.parent).free} bytes are free there"
    except OSError:
        free = ""
    amount = f"{needed} bytes" if exact else f"more than {needed} bytes"
    return DiskFullError(
        err.errno,
        f"{path} could not be written: {os.strerror(err.errno or 0)} (it needs {amount}{free}). "
        f"The previous {path.name}, if any, is unchanged. Free space on the file system of "
        f"{path.parent} (or raise your quota there), then run the same command again.",
    )


def create_temp_file(directory: Path, prefix: str, suffix: str) -> Path:
    """A new empty file of a unique name in ``directory``, as :func:`tempfile.mkstemp` makes one
    but with the mode a plain ``open()`` gives (``0o666`` less the umask, which the kernel applies,
    so the umask is never read), not mkstemp's 0600: renamed into place, it is readable by whom the
    umask lets read it."""
    for _ in range(100):
        path = directory / f"{prefix}{secrets.token_hex(8)}{suffix}"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no unused name {prefix}*{suffix} found in {directory} after 100 tries")


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds, else
    remove it. A block that runs out of space raises :class:`DiskFullError`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = create_temp_file(path.parent, f".{path.name}.", ".tmp")
    try:
        try:
            yield tmp
        except OSError as err:
            if err.errno in FULL_DISK_ERRNOS and not isinstance(err, DiskFullError):
                raise disk_full_error(path, err, tmp.stat().st_size, exact=False) from err
            raise
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path | str, write: Callable[[Path], Any]) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


class _CountingSink:
    """A file's ``write`` that, once a write has failed, only counts the bytes that follow: so a
    serializer that cannot report an error (``torch.save``) runs to its end, and the whole size is
    known."""

    def __init__(self, file: Any) -> None:
        self.file, self.size, self.error = file, 0, None

    def write(self, data: bytes) -> int:
        self.size += len(data)
        self._do(self.file.write, data)
        return len(data)

    def flush(self) -> None:
        self._do(self.file.flush)

    def _do(self, action: Callable[..., Any], *args: Any) -> None:
        if self.error is None:
            try:
                action(*args)
            except OSError as err:
                self.error = err


def _write_torch(obj: Any, tmp: Path, path: Path) -> None:
    """``torch.save(obj)`` into ``tmp`` (the temporary file of ``path``); a write that runs out of
    space raises :class:`DiskFullError` with the size of the whole file (torch's own error would
    neither say why nor how much)."""
    import torch  # here, not at module level: a job that writes only JSON never imports torch

    sink = None
    try:
        with open(tmp, "wb") as file:
            sink = _CountingSink(file)
            torch.save(obj, sink)
            if sink.error is not None:
                raise sink.error
    except OSError as err:
        if err.errno in FULL_DISK_ERRNOS and sink is not None:
            raise disk_full_error(path, err, sink.size, exact=True) from err
        raise


def save_torch(obj: Any, path: Path | str) -> None:
    with atomic_path(path) as tmp:
        _write_torch(obj, tmp, Path(path))


def load_torch(path: Path | str, map_location: str | torch.device = "cpu") -> Any:
    """Load a file written by :func:`save_torch` (tensors and plain containers only)."""
    import torch

    return torch.load(path, map_location=map_location, weights_only=True)


def redo_hint(path: Path | str, action: str) -> str:
    """How to make the workflow's output ``path`` again: ``action`` is e.g. "Retrain"."""
    return (
        f"{action} it: `rm {path}`, then run the same command again (e.g. `bash run.sh`); "
        f"or `bash run.sh --forcerun {path}` (snakemake --cores all --forcerun {path})."
    )


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
    """:func:`save_torch`, with the file's SHA-256 recorded beside it (:func:`digest_path`).

    Both are written to temporary files first, so a failed write (:class:`DiskFullError`) leaves
    the previous file and its record as they were; then the old record goes, the file is renamed
    into place, then its record: a crash at any point leaves no record that disagrees with its file.
    """
    path = Path(path)
    record = digest_path(path)
    with atomic_path(record) as record_tmp, atomic_path(path) as tmp:
        _write_torch(obj, tmp, path)
        record_tmp.write_text(f"{sha256sum(tmp)}  {path.name}\n")
        record.unlink(missing_ok=True)


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
