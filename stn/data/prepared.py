"""Prepared data sets: raw images decoded once into uint8 arrays cached as ``.npy`` files and
described by a JSON manifest.

A data set that prepares its raw files once (SVHN's crops, PlanktonSet's squares) keeps each
cache in an :class:`ArrayCache`: it deletes the old manifest, writes the arrays into a temporary
folder beside the cache (:meth:`ArrayCache.rebuild`), then :meth:`ArrayCache.commit` syncs each to
disk, records its file, shape, dtype and size in bytes in the manifest and renames everything into
place, the manifest last. A cache is reused only where :meth:`ArrayCache.fresh` finds its
manifest of this :data:`MANIFEST_VERSION`, made from the same inputs, and the arrays as it
describes them (:func:`check_arrays`).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

MANIFEST_VERSION = 1
"""The layout of the manifests: a cache of another version is prepared again."""

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)  # PIL's, for bad files


class UndecodableImage(ValueError):
    """An image file that does not decode; the message is the reason (``"<error type>: <error>"``)."""


def decode_image(data: bytes, mode: str) -> np.ndarray:
    """An image file's bytes as a uint8 array in PIL ``mode`` (``"L"``: (H, W), ``"RGB"``:
    (H, W, 3); other modes are converted).

    Raises:
        UndecodableImage: the bytes are not an image PIL decodes completely.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(im.convert(mode), dtype=np.uint8)
    except _DECODE_ERRORS as err:
        raise UndecodableImage(f"{type(err).__name__}: {err}") from err


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


@dataclass(frozen=True)
class ArrayCache:
    """The cached uint8 arrays ``<name>_<key>.npy`` (one per key of ``keys``) in ``out_dir`` and
    their manifest ``<name>.json``."""

    out_dir: Path
    name: str
    keys: tuple[str, ...] = ("images", "labels")

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / f"{self.name}.json"

    def file(self, key: str) -> str:
        """The file name of the array ``key`` (in ``out_dir``, and in a work folder while written)."""
        return f"{self.name}_{key}.npy"

    def path(self, key: str) -> Path:
        """The cached array ``key``."""
        return self.out_dir / self.file(key)

    def read_manifest(self) -> dict | None:
        """The manifest, or ``None`` where there is none or it is unreadable."""
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) else None

    def fresh(self, matches: Callable[[dict], bool]) -> dict | None:
        """The manifest where it is of :data:`MANIFEST_VERSION`, ``matches`` it (the inputs and
        settings it records are the ones asked for) and the arrays are as it describes them;
        ``None`` where the cache must be prepared again (a manifest lacking a key included)."""
        manifest = self.read_manifest()
        try:
            if (
                manifest is None
                or manifest["version"] != MANIFEST_VERSION
                or not matches(manifest)
                or check_arrays(self.out_dir, manifest, self.keys) is not None
            ):
                return None
        except (KeyError, TypeError):
            return None
        return manifest

    @contextmanager
    def rebuild(self) -> Iterator[Path]:
        """A work folder ``.<name>-work-*`` in ``out_dir`` (created if need be) to write the arrays
        in, removed afterwards. The old manifest is deleted first: its arrays are stale from here,
        so an interrupted preparation leaves no cache that :meth:`fresh` accepts."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(dir=self.out_dir, prefix=f".{self.name}-work-") as work:
            yield Path(work)

    def commit(self, work: Path, fields: Mapping[str, Any]) -> dict:
        """Move the arrays written as ``work / self.file(key)`` into place with their manifest and
        return it: ``version``, then ``fields``, then each array's ``file``, ``shape``, ``dtype`` and
        ``bytes``. Each file is synced to disk before the renames, the manifest renamed last."""
        manifest = {"version": MANIFEST_VERSION, **fields}
        for key in self.keys:
            path = work / self.file(key)
            fsync(path)
            array = np.load(path, mmap_mode="r")
            entry = {"shape": list(array.shape), "dtype": str(array.dtype), "bytes": path.stat().st_size}
            manifest[key] = {"file": self.file(key), **entry}
            del array
        written = work / self.manifest_path.name
        written.write_text(json.dumps(manifest, indent=1) + "\n")
        fsync(written)
        for key in self.keys:
            os.replace(work / self.file(key), self.path(key))
        os.replace(written, self.manifest_path)
        return manifest
