"""Files under a given umask: each file the pipeline writes gets the mode a plain open() gives."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

UMASKS = [0o022, 0o007]
"""A usual umask (others read) and a group's (others nothing)."""


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """The process's umask is ``mask`` within the block."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def modes(paths: Iterable[Path]) -> dict[str, int]:
    """Each file's permission bits, by name."""
    return {path.name: path.stat().st_mode & 0o777 for path in paths}


def open_modes(paths: Iterable[Path], mask: int) -> dict[str, int]:
    """What :func:`modes` gives for files made by a plain ``open(path, "w")`` under ``mask``."""
    return {path.name: 0o666 & ~mask for path in paths}
