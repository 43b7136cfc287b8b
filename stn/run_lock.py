"""One trainer per run: an exclusive ``flock`` on ``<checkpoint>.lock`` for as long as a run trains.

A second trainer of the same run (a job that Snakemake's ``--rerun-incomplete`` submitted again
while its first copy still runs on a compute node) waits until the lock is free, printing who holds
it every ``message_every_s``, and then finds the run finished or resumes it. The operating system
releases a ``flock`` when its holder dies in any way (``kill -9``, a node's NFS lease ending), so a
waiter never waits for a dead holder. ``flock`` works on local disks, NFSv4, and Lustre mounted
with ``-o flock``.

The lock file holds its holder's pid, host and start time, and is removed on release.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stn.io import DamagedFileError, load_torch_verified


class RunLockError(RuntimeError):
    """The run's lock cannot be taken: another process holds it too long, or the file system has
    no ``flock``."""


def lock_path(checkpoint: Path | str) -> Path:
    """The lock file of the run whose final checkpoint is ``checkpoint``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name + ".lock")


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it into the lock file."""
    text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    return text or "a process that has not yet written its pid and host"


def _try_lock(fd: int, lock: Path) -> bool:
    """Take the exclusive lock on ``fd`` if it is free."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise RunLockError(
                f"cannot lock {lock}: the file system does not support flock ({os.strerror(err.errno)}). "
                "Put the results on a local disk, NFSv4, or Lustre mounted with -o flock."
            ) from err
        raise
    return True


def _is_current(fd: int, lock: Path) -> bool:
    """Whether ``fd`` is still the file at ``lock`` (a releasing holder removes it; a waiter that
    then locks the removed file must lock the new one instead)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(lock))
    except FileNotFoundError:
        return False


def _open(lock: Path) -> int:
    return os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)


def _acquire(lock: Path, timeout_s: float | None, message_every_s: float, poll_s: float) -> int:
    """An open descriptor of ``lock`` that holds its exclusive lock, after waiting while another
    process holds it (a message to stderr every ``message_every_s``, at most ``timeout_s``)."""
    began = time.monotonic()
    next_message = began
    fd = _open(lock)
    try:
        while True:
            if _try_lock(fd, lock):
                if _is_current(fd, lock):
                    return fd
                os.close(fd)
                fd = _open(lock)
                continue
            waited = time.monotonic() - began
            holder = _holder(fd)
            if timeout_s is not None and waited >= timeout_s:
                raise RunLockError(
                    f"{lock} is still held by {holder} after {waited:.0f} s of waiting: another process "
                    "trains this run. Let it finish, or stop it (kill its pid on its host, or scancel "
                    "its SLURM job), then run the same command again."
                )
            if time.monotonic() >= next_message:
                print(
                    f"{lock} is held by {holder}, which trains this run: waiting for it to finish "
                    f"({waited:.0f} s so far); then this run is found finished or resumed.",
                    file=sys.stderr,
                    flush=True,
                )
                next_message = time.monotonic() + message_every_s
            time.sleep(poll_s)
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def hold_run(
    checkpoint: Path | str,
    *,
    timeout_s: float | None = None,
    message_every_s: float = 60.0,
    poll_s: float = 1.0,
) -> Iterator[Path]:
    """Hold the exclusive lock of the run of ``checkpoint`` within the block; yield the lock file.

    While another process holds it, wait (polling every ``poll_s``), printing to stderr every
    ``message_every_s`` which pid on which host holds it. ``timeout_s=None`` waits as long as the
    holder lives.

    Raises:
        RunLockError: still held after ``timeout_s``, or the file system has no ``flock``; the
            message names the lock file, its holder and what to do.
    """
    lock = lock_path(checkpoint)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(lock, timeout_s, message_every_s, poll_s)
    try:
        since = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()} since {since}\n".encode(), 0)
        yield lock
    finally:
        lock.unlink(missing_ok=True)  # while still locked: a waiter then sees the file has gone
        os.close(fd)


def finished_stats(checkpoint: Path | str, config: dict[str, Any]) -> dict[str, Any] | None:
    """The training statistics of ``checkpoint`` where it is a finished run of ``config`` that
    passes its SHA-256 record (another trainer of the run finished it), else ``None``."""
    try:
        content = load_torch_verified(checkpoint)
    except DamagedFileError:
        return None
    return content["train_stats"] if content.get("config") == config else None
