"""Atomic writes: a reader never sees a half-written file."""

from __future__ import annotations

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


def save_json(obj: Any, path: Path | str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


@contextmanager
def output_to(log: Path | str) -> Iterator[None]:
    """Send stdout and stderr (progress bars included) to ``log`` within the block."""
    import contextlib

    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        yield
