"""Prepared data sets: uint8 arrays cached as ``.npy`` files and described by a JSON manifest.

A data set that prepares its raw files once (SVHN's crops, PlanktonSet's squares) writes each array
under a temporary name, syncs it to disk, records its file, shape and size in bytes in the
manifest, and renames everything into place, the manifest last; a cache is reused only where
:func:`check_arrays` finds the arrays as the manifest describes them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def fsync(path: Path) -> None:
    """Flush a written file to disk (before it is renamed into place)."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def check_arrays(out_dir: Path, manifest: Mapping, keys: Sequence[str] = ("images", "labels")) -> str | None:
    """Why the uint8 arrays a manifest describes (``manifest[key]``: ``file``, ``bytes``,
    ``shape``) are not usable, or ``None``."""
    for key in keys:
        entry = manifest[key]
        path = out_dir / entry["file"]
        if not path.exists():
            return f"{path} is missing"
        if path.stat().st_size != entry["bytes"]:
            return f"{path} has {path.stat().st_size} bytes, the manifest says {entry['bytes']}"
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:
            return f"{path} does not load ({err})"
        if list(array.shape) != entry["shape"] or array.dtype != np.uint8:
            return f"{path} holds {array.dtype} {array.shape}, the manifest says uint8 {entry['shape']}"
    return None
