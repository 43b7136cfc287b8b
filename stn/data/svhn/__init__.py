"""SVHN format 1 (whole house numbers): the raw archives, the ``digitStruct.mat`` reader and the
Goodfellow et al. (2013) crops.

Each archive ``<split>.tar.gz`` holds ``<split>/1.png … <split>/N.png`` and
``<split>/digitStruct.mat``, a MATLAB v7.3 (HDF5) file. Its row ``i`` describes ``(i+1).png``:

- ``digitStruct/name`` and ``digitStruct/bbox`` are ``(N, 1)`` datasets of object references;
- a name points to a ``(len, 1)`` uint16 dataset of characters;
- a bbox points to a group with the datasets ``height``, ``label``, ``left``, ``top`` and
  ``width``: for one box each is an inline ``(1, 1)`` number, for ``k`` boxes a ``(k, 1)`` array
  of references, each to a ``(1, 1)`` number;
- label 10 is the digit 0.

:func:`read_digit_struct` parses it into a columnar :class:`DigitStruct` (one offset per image and
flat arrays of box coordinates and digits). h5py has no bulk dereference, so the reader goes
through the low-level API (no high-level ``Dataset`` objects, one preallocated buffer per shape)
and splits the rows over worker processes for large files.

:func:`crop_box` and :func:`crop_and_resize` make the 64x64 crops of Goodfellow et al. (2013): the
union of the digit boxes, enlarged by 30% in x and in y about its centre, cropped (zeros where it
leaves the image) and resized. :func:`sequence_labels` makes the 5-position labels (10 = no digit);
:func:`length_filter` drops the sequences longer than 5 digits.

:func:`download_svhn` fetches the archives, verified by size and SHA-256 (resumed or retried, with
progress; archives placed by hand are verified and used). :func:`prepare_svhn` turns them once into
cached uint8 arrays, ``train`` (train then extra, in one array) and ``test``, each with a JSON
manifest, written atomically; :func:`load_prepared` opens them memory-mapped.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import itertools
import json
import logging
import math
import mmap
import multiprocessing
import os
import re
import sys
import tarfile
import tempfile
import zlib
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from struct import unpack_from as _unpack_from

import h5py
import numpy as np
import torch
from h5py import h5a, h5d, h5r, h5s, h5t
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from stn.data.base import DataSet, Splits, Task, register_dataset
from stn.data.download import RemoteFile, fetch
from stn.data.prepared import check_arrays, fsync

logger = logging.getLogger(__name__)

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"


@dataclass(frozen=True)
class SVHNArchive:
    """One SVHN format-1 archive: ``name`` under ``base_url``, its size in bytes, SHA-256 hex digest,
    and the number of images (``1.png … images.png``) it holds in the folder :attr:`split`."""

    name: str
    size: int
    sha256: str
    images: int
    base_url: str = SVHN_URL

    @property
    def url(self) -> str:
        return f"{self.base_url.rstrip('/')}/{self.name}"

    @property
    def split(self) -> str:
        """The folder inside the archive (``train``, ``test``, ``extra``)."""
        return self.name.removesuffix(".tar.gz")

    def remote(self) -> RemoteFile:
        """The archive as :func:`stn.data.download.fetch` downloads and verifies it."""
        return RemoteFile(self.name, sha256=self.sha256, size=self.size)


# The checksums were published with the issue. :meth:`SVHNArchive.remote` turns a record into the
# stn.data.download.RemoteFile that fetch verifies by size and SHA-256.
SVHN_FILES: dict[str, SVHNArchive] = {
    "train": SVHNArchive(
        "train.tar.gz", 404141560, "4b17bb33b6cd8f963493168f80143da956f28ec406cc12f8e5745a9f91a51898", 33402
    ),
    "test": SVHNArchive(
        "test.tar.gz", 276555967, "57ac9ceb530e4aa85b55d991be8fc49c695b3d71c6f6a88afea86549efde7fb5", 13068
    ),
    "extra": SVHNArchive(
        "extra.tar.gz", 1955489752, "e857e27d1e65bd1e7d3959b094061777f6506bbc39889a0df3bba6a729d60f9c", 202353
    ),
}

BOX_FIELDS: tuple[str, ...] = ("height", "label", "left", "top", "width")
MAX_DIGITS = 5
NO_DIGIT = 10
ENLARGE = 1.3
CROP_SIZE = 64


class SVHNFormatError(ValueError):
    """An SVHN file that is not in the expected format 1 layout."""


@dataclass(frozen=True)
class DigitStruct:
    """The boxes of ``N`` images, columnar: image ``i`` has the boxes ``start[i]:start[i + 1]``.

    ``left``, ``top``, ``width`` and ``height`` are float64 pixels as stored; ``label`` is the digit
    0-9 (the file's 10 already mapped to 0); ``names`` the image file names, row ``i`` being
    ``f"{i + 1}.png"`` (``None`` when not read).
    """

    start: np.ndarray  # int64 [N + 1]
    left: np.ndarray
    top: np.ndarray
    width: np.ndarray
    height: np.ndarray
    label: np.ndarray  # int64
    names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.start) - 1

    @property
    def counts(self) -> np.ndarray:
        """The number of digits of each image."""
        return np.diff(self.start)

    def boxes(self, i: int) -> np.ndarray:
        """Image ``i``'s boxes as float64 ``[k, 4]``: left, top, width, height."""
        s = slice(self.start[i], self.start[i + 1])
        return np.stack([self.left[s], self.top[s], self.width[s], self.height[s]], axis=1)

    def labels(self, i: int) -> np.ndarray:
        """Image ``i``'s digits, left to right as stored."""
        return self.label[self.start[i] : self.start[i + 1]]


# ---------------------------------------------------------------------------------------------
# Reading digitStruct.mat


class _RawObjects:
    """Reads small contiguous or compact datasets straight from the file's bytes by address.

    An object reference in an HDF5 file is the address of the object's header. For the millions
    of tiny datasets of ``digitStruct.mat`` (one number, or one name), parsing the header here
    costs a few microseconds where h5py's dereference, open and read cost about 100. Only version-1
    object headers, version-3 layout messages and unfiltered data are read; for anything else
    :meth:`read` returns ``None`` and the caller goes through h5py.
    """

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:  # mapped, not read: workers share the page cache
            self.buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if path.stat().st_size else b""
        self.base = None
        pos = 0
        while pos < min(len(self.buf), 1 << 20):
            if self.buf[pos : pos + 8] == b"\x89HDF\r\n\x1a\n":
                break
            pos = 512 if pos == 0 else pos * 2
        else:
            return
        version, offsets, lengths = self.buf[pos + 8], self.buf[pos + 13], self.buf[pos + 14]
        if version in (0, 1) and offsets == 8 and lengths == 8:
            at = pos + (24 if version == 0 else 28)
            self.base = int.from_bytes(self.buf[at : at + 8], "little")

    def messages(self, address: int) -> list[tuple[int, int]] | None:
        """``(type, data offset)`` of each message of the version-1 object header at ``address``,
        continuation blocks followed, or ``None`` where the header is not version 1."""
        buf, unpack = self.buf, _unpack_from
        if self.base is None:
            return None
        p = self.base + address
        if p + 16 > len(buf) or buf[p] != 1:
            return None
        nmsgs = unpack("<H", buf, p + 2)[0]
        blocks = [(p + 16, p + 16 + unpack("<I", buf, p + 8)[0])]
        out: list[tuple[int, int]] = []
        while blocks and len(out) < nmsgs:
            q, stop = blocks.pop()
            while q + 8 <= stop and len(out) < nmsgs:
                mtype, msize = unpack("<HH", buf, q)
                out.append((mtype, q + 8))
                if mtype == 16:  # continuation
                    at, n = unpack("<QQ", buf, q + 8)
                    blocks.append((self.base + at, self.base + at + n))
                q += 8 + msize
        return out

    def read(self, address: int) -> tuple[tuple[int, ...], int, int, bytes] | None:
        """``(dims, type class, element size, raw little-endian data)`` of the dataset whose header
        is at ``address``, or ``None`` where this reader does not handle it."""
        buf, unpack = self.buf, _unpack_from
        msgs = self.messages(address)
        if msgs is None:
            return None
        dims = tclass = esize = data = None
        for mtype, d in msgs:
            if mtype == 1:  # dataspace
                if buf[d] != 1:
                    return None
                rank = buf[d + 1]
                dims = unpack(f"<{rank}Q", buf, d + 8)
            elif mtype == 3:  # datatype
                tclass, bits = buf[d] & 0x0F, buf[d + 1]
                if bits & 1:  # big-endian
                    return None
                esize = unpack("<I", buf, d + 4)[0]
            elif mtype == 8:  # data layout
                if buf[d] != 3:
                    return None
                if buf[d + 1] == 0:  # compact
                    n = unpack("<H", buf, d + 2)[0]
                    data = buf[d + 4 : d + 4 + n]
                elif buf[d + 1] == 1:  # contiguous
                    at, n = unpack("<QQ", buf, d + 2)
                    if at == 0xFFFFFFFFFFFFFFFF:
                        return None
                    data = buf[self.base + at : self.base + at + n]
                else:
                    return None
            elif mtype == 11:  # filter pipeline
                return None
        if dims is None or tclass is None or data is None:
            return None
        if len(data) != math.prod(dims) * esize:
            return None
        return dims, tclass, esize, data

    def number(self, address: int) -> float | None:
        """The value of a ``(1, 1)`` numeric dataset, or ``None`` where :meth:`read` gives none."""
        got = self.read(address)
        if got is None:
            return None
        dims, tclass, esize, data = got
        if math.prod(dims) != 1:
            return None
        if tclass == 1 and esize in (4, 8):
            return _unpack_from("<d" if esize == 8 else "<f", data, 0)[0]
        if tclass == 0 and esize in (1, 2, 4, 8):  # unsigned integers, as MATLAB stores them
            return float(int.from_bytes(data, "little"))
        return None

    def text(self, address: int) -> str | None:
        """A MATLAB char array (uint16 code units), or ``None`` where :meth:`read` gives none."""
        got = self.read(address)
        if got is None or got[1] != 0 or got[2] != 2:
            return None
        return got[3].decode("utf-16-le")

    def children(self, address: int) -> dict[str, int] | None:
        """The links of an old-style (symbol table) group: name -> object header address."""
        buf, unpack = self.buf, _unpack_from
        msgs = self.messages(address)
        if msgs is None:
            return None
        table = next((unpack("<QQ", buf, d) for mtype, d in msgs if mtype == 17), None)
        if table is None:
            return None
        heap = self.base + table[1]
        if buf[heap : heap + 4] != b"HEAP":
            return None
        names_at = self.base + unpack("<Q", buf, heap + 24)[0]
        out: dict[str, int] = {}
        nodes = [table[0]]
        while nodes:
            node = self.base + nodes.pop()
            if buf[node : node + 4] != b"TREE" or buf[node + 4] != 0:
                return None
            level, used = buf[node + 5], unpack("<H", buf, node + 6)[0]
            kids = unpack(f"<{2 * used + 1}Q", buf, node + 24)[1::2]
            if level > 0:
                nodes.extend(kids)
                continue
            for kid in kids:
                snod = self.base + kid
                if buf[snod : snod + 4] != b"SNOD":
                    return None
                for e in range(unpack("<H", buf, snod + 6)[0]):
                    name_offset, target = unpack("<QQ", buf, snod + 8 + 40 * e)
                    at = names_at + name_offset
                    out[buf[at : buf.find(b"\0", at)].decode()] = target
        return out

    def box_row(self, address: int) -> list[list[float]] | None:
        """The five fields (BOX_FIELDS order) of the bbox group at ``address``, or ``None`` where
        this reader does not handle it."""
        kids = self.children(address)
        if kids is None:
            return None
        out = []
        for field in BOX_FIELDS:
            at = kids.get(field)
            got = None if at is None else self.read(at)
            if got is None:
                return None
            dims, tclass, esize, data = got
            n = math.prod(dims)
            if tclass == 7 and esize == 8:  # references to (1, 1) numbers
                vals = [self.number(a) for a in _unpack_from(f"<{n}Q", data, 0)]
                if None in vals:
                    return None
            elif tclass == 1 and esize == 8:
                vals = list(_unpack_from(f"<{n}d", data, 0))
            else:
                return None
            out.append(vals)
        return out


def _rows(path: Path, lo: int, hi: int, read_names: bool) -> tuple:
    """Parse rows ``lo:hi`` of ``path``: (counts, five value arrays in BOX_FIELDS order, names).

    Each row is read from the file's bytes by :class:`_RawObjects`, or through h5py where that
    gives up."""
    raw = _RawObjects(path)
    ref_type = h5t.STD_REF_OBJ
    one = np.empty((1, 1), np.float64)
    all_ = h5s.ALL
    deref = h5r.dereference
    values = [array("d") for _ in BOX_FIELDS]
    counts = np.empty(hi - lo, np.int64)
    names: list[str] | None = [] if read_names else None

    def numbers(ds) -> list[float]:
        """A field through h5py: inline numbers or references to (1, 1) numbers."""
        if ds.get_type().get_class() != h5t.REFERENCE:
            buf = np.empty(ds.shape, np.float64)
            ds.read(all_, all_, buf)
            return buf.reshape(-1).tolist()
        refs = np.empty(ds.shape, dtype=h5py.ref_dtype)
        ds.read(all_, all_, refs)
        out = []
        for r in refs.flat:
            deref(r, fid).read(all_, all_, one)
            out.append(float(one[0, 0]))
        return out

    def slow_row(row: int) -> list[list[float]]:
        gid = deref(group["bbox"][lo + row, 0], fid)
        if gid is None:
            raise SVHNFormatError(f"{path}: digitStruct/bbox row {lo + row} is a null reference")
        try:
            return [numbers(h5d.open(gid, field.encode())) for field in BOX_FIELDS]
        except KeyError as err:
            raise SVHNFormatError(f"{path}: digitStruct/bbox row {lo + row} lacks a field ({err})") from err

    with h5py.File(path, "r") as f:
        fid = f.id
        group = f["digitStruct"]
        addrs = np.empty(group["bbox"].shape, np.uint64)
        group["bbox"].id.read(all_, all_, addrs, ref_type)
        for row, a in enumerate(addrs.reshape(-1)[lo:hi].tolist()):
            fields = raw.box_row(a) or slow_row(row)
            k = len(fields[0])
            for j, vals in enumerate(fields):
                if len(vals) != k:
                    raise SVHNFormatError(
                        f"{path}: digitStruct/bbox row {lo + row} has {k} values of {BOX_FIELDS[0]} "
                        f"but {len(vals)} of {BOX_FIELDS[j]}"
                    )
                values[j].extend(vals)
            counts[row] = k
        if read_names:
            name = group["name"].id
            addrs = np.empty(name.shape, np.uint64)
            name.read(all_, all_, addrs, ref_type)
            for row, a in enumerate(addrs.reshape(-1)[lo:hi].tolist()):
                text = raw.text(a)
                if text is None:
                    ds = deref(group["name"][lo + row, 0], fid)
                    chars = np.empty(ds.shape, np.uint16)
                    ds.read(all_, all_, chars)
                    text = chars.reshape(-1).tobytes().decode("utf-16-le")
                names.append(text)
    return counts, [np.frombuffer(v, np.float64) for v in values], names


def _rows_star(args: tuple) -> tuple:
    return _rows(*args)


def _default_workers(n: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, n // 20000))


def read_digit_struct(
    path: Path | str,
    expected: int | None = None,
    *,
    names: bool = True,
    workers: int | None = None,
    fix: str | None = None,
) -> DigitStruct:
    """Parse a format-1 ``digitStruct.mat`` (MATLAB v7.3) into a :class:`DigitStruct`.

    Args:
        path: the ``digitStruct.mat`` file.
        expected: the number of images of the split (``SVHN_FILES[split].images``, or the PNGs
            found); a file with another row count is an error.
        names: read the image names and check that row ``i`` is ``f"{i + 1}.png"``.
        workers: processes to split the rows over; by default one per 20,000 rows, at most one
            per available CPU.
        fix: what the error messages tell the user to do (by default: re-extract the file).

    Raises:
        SVHNFormatError: the file is not HDF5, has no ``digitStruct`` group with ``name`` and
            ``bbox``, has another row count than ``expected``, or a malformed row.
    """
    path = Path(path)
    fix = fix or "re-extract it from the verified archive (delete the extracted folder and rerun)"
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise SVHNFormatError(f"{path}: not a readable MATLAB v7.3 (HDF5) file ({err}); {fix}") from err
    with f:
        group = f.get("digitStruct")
        if not isinstance(group, h5py.Group):
            raise SVHNFormatError(
                f"{path}: no 'digitStruct' group, not an SVHN format-1 digitStruct.mat; {fix}"
            )
        for key in ("name", "bbox"):
            if not isinstance(group.get(key), h5py.Dataset):
                raise SVHNFormatError(f"{path}: no dataset digitStruct/{key}; {fix}")
        n_names, n_bbox = group["name"].size, group["bbox"].size
        if group["bbox"].dtype != h5py.ref_dtype or group["name"].dtype != h5py.ref_dtype:
            raise SVHNFormatError(
                f"{path}: digitStruct/name and digitStruct/bbox must hold object references"
            )
    if n_names != n_bbox:
        raise SVHNFormatError(f"{path}: {n_names} names but {n_bbox} bbox rows; {fix}")
    n = n_bbox
    if expected is not None and n != expected:
        raise SVHNFormatError(
            f"{path}: digitStruct.mat has {n} rows but {expected} images are expected; "
            f"the .mat file and the images are from different splits or versions; {fix}"
        )
    workers = _default_workers(n) if workers is None else max(1, min(workers, n))
    if workers == 1:
        parts = [_rows(path, 0, n, names)]
    else:
        edges = np.linspace(0, n, workers + 1).astype(int)
        jobs = [(path, int(a), int(b), names) for a, b in itertools.pairwise(edges)]
        # fork where there is one: a spawned worker would import torch (through stn) first, for
        # seconds; no HDF5 file is open in this process at this point
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            parts = pool.map(_rows_star, jobs)
    counts = np.concatenate([p[0] for p in parts])
    height, label, left, top, width = (np.concatenate([p[1][j] for p in parts]) for j in range(5))
    if (
        not np.all(np.isfinite(label))
        or np.any(label != np.round(label))
        or np.any((label < 0) | (label > 10))
    ):
        raise SVHNFormatError(f"{path}: labels must be whole numbers 0-10")
    label = label.astype(np.int64)
    label[label == 10] = 0
    start = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=start[1:])
    all_names = None
    if names:
        all_names = [s for p in parts for s in p[2]]
        for i, name in enumerate(all_names):
            if name != f"{i + 1}.png":
                raise SVHNFormatError(f"{path}: row {i} names {name!r}, expected '{i + 1}.png'; {fix}")
    return DigitStruct(start, left, top, width, height, label, all_names)


# ---------------------------------------------------------------------------------------------
# Writing digitStruct.mat in MATLAB's layout (for tests and benchmarks)

_MATLAB_HEADER = (
    b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 1970 HDF5 schema 1.00 ."
)


class _MatWriter:
    """Low-level writer of MATLAB v7.3 objects into ``#refs#``, named as MATLAB names them."""

    def __init__(self, f: h5py.File) -> None:
        self.f = f
        # tracking creation order makes it a new-style (indexed) group: inserting into an
        # old-style one slows down with its size, and 200,000 rows make millions of objects
        self.refs = f.create_group("#refs#", track_order=True)
        self.count = 0
        self.scalar = h5s.create(h5s.SCALAR)
        self.space_11 = h5s.create_simple((1, 1))
        self.f8 = h5t.IEEE_F64LE
        self._class_types: dict[bytes, h5t.TypeID] = {}

    def next_name(self) -> bytes:
        letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        i, out = self.count, ""
        self.count += 1
        while True:
            out = letters[i % 52] + out
            i = i // 52 - 1
            if i < 0:
                return out.encode()

    def set_class(self, obj, value: bytes) -> None:
        tid = self._class_types.get(value)
        if tid is None:
            # as MATLAB: ASCII, null-terminated, of the text's length (no room for the null)
            tid = self._class_types[value] = h5t.C_S1.copy()
            tid.set_size(len(value))
            tid.set_strpad(h5t.STR_NULLTERM)
        attr = h5a.create(obj, b"MATLAB_class", tid, self.scalar)
        attr.write(np.array(value, dtype=f"S{len(value)}"), mtype=tid)

    def double(self, loc, name: bytes, value: float) -> None:
        ds = h5d.create(loc, name, self.f8, self.space_11)
        ds.write(h5s.ALL, h5s.ALL, np.full((1, 1), value, np.float64))
        self.set_class(ds, b"double")

    def refs_dataset(self, loc, name: bytes, targets: Sequence[bytes], matlab_class: bytes) -> None:
        """A ``(len(targets), 1)`` dataset of references to the ``#refs#`` objects ``targets``."""
        refs = np.empty((len(targets), 1), dtype=h5py.ref_dtype)
        for i, t in enumerate(targets):
            refs[i, 0] = h5r.create(self.refs.id, t, h5r.OBJECT)
        ds = h5d.create(loc, name, h5t.STD_REF_OBJ, h5s.create_simple(refs.shape))
        ds.write(h5s.ALL, h5s.ALL, refs)
        self.set_class(ds, matlab_class)

    def char(self, text: str) -> bytes:
        name = self.next_name()
        chars = np.frombuffer(text.encode("utf-16-le"), np.uint16).reshape(-1, 1)
        ds = h5d.create(self.refs.id, name, h5t.STD_U16LE, h5s.create_simple(chars.shape))
        ds.write(h5s.ALL, h5s.ALL, np.ascontiguousarray(chars))
        self.set_class(ds, b"char")
        attr = h5a.create(ds, b"MATLAB_int_decode", h5t.STD_I32LE, self.scalar)
        attr.write(np.array(2, np.int32))
        return name


def write_digit_struct(
    path: Path | str,
    boxes: Sequence[Sequence[Sequence[float]]],
    names: Sequence[str] | None = None,
) -> None:
    """Write a ``digitStruct.mat`` in the layout MATLAB 7.3 gives ``save -v7.3`` of SVHN's struct.

    ``boxes[i]`` lists image ``i``'s boxes as ``(left, top, width, height, label)`` with label
    1-10 (10 for the digit 0); ``names`` default to ``1.png … N.png``. As in the real files, the
    file has MATLAB's 512-byte user block, a ``#refs#`` group with the canonical empty ``a``, and a
    box group's fields are inline ``(1, 1)`` doubles for one box and ``(k, 1)`` references for
    ``k`` boxes.
    """
    path = Path(path)
    names = [f"{i + 1}.png" for i in range(len(boxes))] if names is None else list(names)
    if len(names) != len(boxes):
        raise ValueError(f"{len(names)} names for {len(boxes)} rows")
    order = {f: j for j, f in enumerate(("left", "top", "width", "height", "label"))}
    with h5py.File(path, "w", userblock_size=512, libver="earliest") as f:
        w = _MatWriter(f)
        empty = f["#refs#"].create_dataset(w.next_name().decode(), data=np.zeros(2, np.uint64))
        empty.attrs["MATLAB_class"] = np.bytes_(b"double")
        empty.attrs["MATLAB_empty"] = np.uint8(1)
        name_targets = [w.char(name) for name in names]
        bbox_targets = []
        for row in boxes:
            gname = w.next_name()
            gid = h5py.h5g.create(w.refs.id, gname)
            w.set_class(gid, b"struct")
            for field in BOX_FIELDS:
                vals = [float(b[order[field]]) for b in row]
                if len(vals) == 1:
                    w.double(gid, field.encode(), vals[0])
                else:
                    targets = []
                    for v in vals:
                        t = w.next_name()
                        w.double(w.refs.id, t, v)
                        targets.append(t)
                    w.refs_dataset(gid, field.encode(), targets, b"cell")
            bbox_targets.append(gname)
        group = f.create_group("digitStruct")
        w.set_class(group.id, b"struct")
        w.refs_dataset(group.id, b"name", name_targets, b"cell")
        w.refs_dataset(group.id, b"bbox", bbox_targets, b"struct")
    with open(path, "r+b") as out:
        out.write(_MATLAB_HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")


# ---------------------------------------------------------------------------------------------
# Images and crops


def load_png(path: Path | str) -> np.ndarray:
    """Decode an RGB image as uint8 ``[H, W, 3]`` (grey or palette images are converted).

    Raises:
        SVHNFormatError: the file is missing or does not decode; the error names it.
    """
    path = Path(path)
    fix = "the extraction is broken: delete the extracted folder and rerun to re-extract the archive"
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SVHNFormatError(f"{path}: cannot be read ({err}); {fix}") from err
    return _decode_png(data, str(path), fix)


def crop_box(boxes: np.ndarray, image_width: int, image_height: int) -> tuple[int, int, int, int]:
    """Goodfellow et al. (2013)'s crop of one image as integer pixel bounds ``(x0, y0, x1, y1)``,
    ``x1`` and ``y1`` exclusive, which may reach outside the image.

    The union of the digit boxes (``boxes``: ``[k, 4]`` left, top, width, height, as in
    :meth:`DigitStruct.boxes`) is enlarged by 30% in x and in y about its centre, then widened to
    whole pixels (``floor`` of the low edge, ``ceil`` of the high edge).

    Raises:
        ValueError: no boxes, a box of no area, or a crop not overlapping the image.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(b) == 0:
        raise ValueError("no boxes")
    if np.any(b[:, 2:] <= 0):
        raise ValueError(f"a box of no area: {b.tolist()}")
    lo_x, lo_y = b[:, 0].min(), b[:, 1].min()
    hi_x, hi_y = (b[:, 0] + b[:, 2]).max(), (b[:, 1] + b[:, 3]).max()
    cx, cy = (lo_x + hi_x) / 2, (lo_y + hi_y) / 2
    hw, hh = (hi_x - lo_x) * ENLARGE / 2, (hi_y - lo_y) * ENLARGE / 2
    eps = 1e-6  # so that 9.9999999 from rounding errors stays 10
    x0, y0 = math.floor(cx - hw + eps), math.floor(cy - hh + eps)
    x1, y1 = math.ceil(cx + hw - eps), math.ceil(cy + hh - eps)
    if x1 <= 0 or y1 <= 0 or x0 >= image_width or y0 >= image_height:
        raise ValueError(f"crop {(x0, y0, x1, y1)} lies outside the {image_width}x{image_height} image")
    return x0, y0, x1, y1


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The pixels ``image[y0:y1, x0:x1]`` of a uint8 ``[H, W, C]`` image, zeros outside it."""
    x0, y0, x1, y1 = box
    h, w = image.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0, *image.shape[2:]), dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def crop_and_resize(image: np.ndarray, box: tuple[int, int, int, int], size: int = CROP_SIZE) -> np.ndarray:
    """Crop ``box`` out of a uint8 ``[H, W, 3]`` image (zero padding outside it) and resize it to
    uint8 ``[size, size, 3]`` with PIL's bilinear filter (antialiased when shrinking)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    patch = Image.fromarray(crop(image, box), mode="RGB")
    return np.asarray(patch.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# Labels


def sequence_labels(labels: Sequence[int] | np.ndarray, max_digits: int = MAX_DIGITS) -> np.ndarray:
    """The digits (0-9, or 10 for 0 as in the file) in ``max_digits`` positions, padded with 10
    (no digit): int64 ``[max_digits]``.

    Raises:
        ValueError: more than ``max_digits`` digits (drop such sequences with :func:`length_filter`).
    """
    digits = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(digits) > max_digits:
        raise ValueError(f"{len(digits)} digits, more than {max_digits}")
    if np.any((digits < 0) | (digits > 10)):
        raise ValueError(f"digits must be 0-10, got {digits.tolist()}")
    out = np.full(max_digits, NO_DIGIT, np.int64)
    out[: len(digits)] = digits % 10
    return out


def length_filter(counts: np.ndarray | DigitStruct, max_digits: int = MAX_DIGITS) -> tuple[np.ndarray, int]:
    """Which images to keep: ``(keep, dropped)``, ``keep`` a bool mask of the images with 1 to
    ``max_digits`` digits and ``dropped`` how many have more (Goodfellow et al. drop them)."""
    if isinstance(counts, DigitStruct):
        counts = counts.counts
    counts = np.asarray(counts)
    keep = (counts >= 1) & (counts <= max_digits)
    return keep, int(np.count_nonzero(counts > max_digits))


def all_sequence_labels(digit_struct: DigitStruct, max_digits: int = MAX_DIGITS) -> np.ndarray:
    """:func:`sequence_labels` of every image at once: int64 ``[N, max_digits]``; the digits past
    ``max_digits`` of a longer sequence are cut (such images are dropped by :func:`length_filter`)."""
    n = len(digit_struct)
    counts = digit_struct.counts
    out = np.full((n, max_digits), NO_DIGIT, np.int64)
    row = np.repeat(np.arange(n), counts)
    pos = np.arange(len(digit_struct.label)) - np.repeat(digit_struct.start[:-1], counts)
    sel = pos < max_digits
    out[row[sel], pos[sel]] = digit_struct.label[sel]
    return out


# ---------------------------------------------------------------------------------------------
# Download and preparation into cached arrays

DEFAULT_SVHN_MIRRORS: tuple[str, ...] = (SVHN_URL,)

# The prepared groups and the splits each is made of, in this order: the training set is train
# followed by extra, in one array (Goodfellow et al. and the authors train on both); the test set
# is test.
GROUPS: dict[str, tuple[str, ...]] = {"train": ("train", "extra"), "test": ("test",)}
MANIFEST_VERSION = 1
_PNG = re.compile(r"([1-9][0-9]*)\.png")
_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def _mirrors(archive: SVHNArchive, mirrors: Sequence[str] | None) -> Sequence[str]:
    return (archive.base_url,) if mirrors is None else mirrors


def download_svhn(
    root: Path | str,
    splits: Sequence[str] = ("train", "extra", "test"),
    *,
    files: Mapping[str, SVHNArchive] = SVHN_FILES,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
    timeout: float = 60,
    attempts: int = 3,
) -> dict[str, Path]:
    """Fetch the archives of ``splits`` into ``root``, each verified by its size and SHA-256.

    An archive already in ``root`` (placed by hand, or downloaded before) is verified and used
    without touching the network. Otherwise it is downloaded from the first of ``mirrors`` (by
    default each archive's ``base_url``, http://ufldl.stanford.edu/housenumbers/) that delivers it,
    with a progress bar; a transfer that breaks off is resumed or tried again ``attempts`` times
    (see :func:`stn.data.download.fetch`), and never appears under the final name unverified.

    Args:
        files: the expected archives by split; replace them to verify other (e.g. generated) ones.

    Returns:
        The path of each split's archive.

    Raises:
        stn.data.download.DownloadError: a present archive with another size or checksum (the
            error names the file, both checksums and the fix), or no mirror delivered it.
    """
    root = Path(root)
    out = {}
    for split in splits:
        archive = _archive(files, split)
        out[split] = fetch(
            archive.remote(),
            root,
            _mirrors(archive, mirrors),
            progress=progress,
            timeout=timeout,
            attempts=attempts,
        )
    return out


def _archive(files: Mapping[str, SVHNArchive], split: str) -> SVHNArchive:
    if split not in files:
        raise ValueError(f"unknown SVHN split {split!r}; known: {', '.join(files)}")
    return files[split]


@dataclass(frozen=True)
class _Scanned:
    """One archive after the first pass: its boxes, which images are kept, their labels."""

    archive: SVHNArchive
    path: Path
    digits: DigitStruct
    keep: np.ndarray  # bool [N]
    dropped: int  # more than MAX_DIGITS digits
    no_digits: int  # no box at all (also not kept)
    labels: np.ndarray  # uint8 [kept, MAX_DIGITS]


def _member(member: tarfile.TarInfo, split: str) -> str | None:
    """The file name of a regular file directly in the archive's ``split`` folder, else ``None``.

    Nothing is ever extracted under a member's name, so names like ``../x`` or absolute paths
    cannot write anywhere; they are simply not SVHN files."""
    if not member.isfile():
        return None
    parts = [p for p in PurePosixPath(member.name).parts if p != "."]
    if len(parts) != 2 or parts[0] != split:
        return None
    return parts[1]


def _broken_archive(path: Path, err: BaseException) -> SVHNFormatError:
    return SVHNFormatError(
        f"{path}: not a complete, readable .tar.gz archive ({type(err).__name__}: {err}); delete it and "
        "rerun to download it again (if it recurs, the size and SHA-256 it was verified against are "
        "those of a broken file)"
    )


def _scan(archive: SVHNArchive, path: Path, work: Path, workers: int | None) -> _Scanned:
    """First pass over an archive: copy its ``digitStruct.mat`` into ``work``, list its PNGs, parse
    the boxes and check that they describe exactly the images present."""
    split = archive.split
    mat = work / f"{split}-digitStruct.mat"
    numbers: list[int] = []
    found = False
    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                name = _member(member, split)
                if name == "digitStruct.mat":
                    source = tar.extractfile(member)
                    with open(mat, "wb") as out:
                        while chunk := source.read(1 << 20):
                            out.write(chunk)
                    found = True
                elif name is not None and (m := _PNG.fullmatch(name)):
                    numbers.append(int(m.group(1)))
    except _TAR_ERRORS as err:
        raise _broken_archive(path, err) from err
    redownload = f"delete {path} and rerun to download it again"
    if not found:
        raise SVHNFormatError(
            f"{path}: no {split}/digitStruct.mat in the archive, so it is not an SVHN format-1 {split} "
            f"archive; {redownload}"
        )
    n = len(numbers)
    if sorted(numbers) != list(range(1, n + 1)):
        missing = sorted(set(range(1, max(numbers, default=0) + 1)) - set(numbers))[:5]
        raise SVHNFormatError(
            f"{path}: the images of {split}/ are not 1.png ... {n}.png (missing {missing}, or repeated); "
            f"{redownload}"
        )
    if n != archive.images:
        raise SVHNFormatError(f"{path}: {n} images in {split}/, expected {archive.images}; {redownload}")
    fix = f"the archive is broken or of another version: {redownload}"
    try:
        digits = read_digit_struct(mat, expected=n, workers=workers, fix=fix)
    except SVHNFormatError as err:
        message = str(err).replace(str(mat), f"{path} ({split}/digitStruct.mat)")
        raise SVHNFormatError(message) from err
    keep, dropped = length_filter(digits)
    no_digits = int(np.count_nonzero(digits.counts == 0))
    labels = all_sequence_labels(digits)[keep].astype(np.uint8)
    return _Scanned(archive, path, digits, keep, dropped, no_digits, labels)


def _decode_png(
    data: bytes, where: str, fix: str = "the archive is broken: delete it and rerun to download it again"
) -> np.ndarray:
    """A PNG's bytes as RGB uint8 ``[H, W, 3]``; an error naming ``where`` and ``fix`` if not a PNG."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as err:  # PIL raises these for corrupt files
        raise SVHNFormatError(
            f"{where}: the image does not decode ({type(err).__name__}: {err}); {fix}"
        ) from err


def _crop_split(scanned: _Scanned, images: np.ndarray, offset: int, bar: tqdm) -> None:
    """Second pass: decode each kept image of the archive, crop it and write it to its row."""
    path, split, digits, keep = scanned.path, scanned.archive.split, scanned.digits, scanned.keep
    rows = offset + np.cumsum(keep) - 1
    done = 0
    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                name = _member(member, split)
                m = _PNG.fullmatch(name) if name else None
                if m is None or not keep[i := int(m.group(1)) - 1]:
                    continue
                where = f"{path} ({split}/{name})"
                image = _decode_png(tar.extractfile(member).read(), where)
                try:
                    box = crop_box(digits.boxes(i), image.shape[1], image.shape[0])
                except ValueError as err:
                    raise SVHNFormatError(
                        f"{where}: no crop for the boxes of digitStruct.mat row {i} ({err}); the archive is "
                        "broken or of another version: delete it and rerun to download it again"
                    ) from err
                images[rows[i]] = crop_and_resize(image, box)
                done += 1
                bar.update()
    except _TAR_ERRORS as err:
        raise _broken_archive(path, err) from err
    if done != int(keep.sum()):  # the archive changed between the two passes
        raise SVHNFormatError(f"{path}: {done} images cropped, expected {int(keep.sum())}; rerun")


def _manifest_path(out_dir: Path, group: str) -> Path:
    return out_dir / f"{group}.json"


def _array_names(group: str) -> tuple[str, str]:
    return f"{group}_images.npy", f"{group}_labels.npy"


def read_manifest(out_dir: Path | str, group: str) -> dict | None:
    """The manifest of a prepared ``group``, or ``None`` where there is none or it is unreadable."""
    try:
        manifest = json.loads(_manifest_path(Path(out_dir), group).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _up_to_date(out_dir: Path, group: str, archives: Sequence[SVHNArchive]) -> dict | None:
    """The group's manifest where it and its arrays are the preparation of exactly ``archives``."""
    manifest = read_manifest(out_dir, group)
    if manifest is None:
        return None
    try:
        same = (
            manifest["version"] == MANIFEST_VERSION
            and manifest["group"] == group
            and [(a["split"], a["sha256"]) for a in manifest["archives"]]
            == [(a.split, a.sha256) for a in archives]
            and (manifest["crop_size"], manifest["enlarge"], manifest["max_digits"])
            == (CROP_SIZE, ENLARGE, MAX_DIGITS)
        )
        if not same or check_arrays(out_dir, manifest) is not None:
            return None
    except (KeyError, TypeError):
        return None
    return manifest


def _prepare_group(
    out_dir: Path, group: str, scanned: Sequence[_Scanned], work: Path, progress: bool
) -> dict:
    """Crop the scanned archives into the group's arrays and manifest, each written under a
    temporary name and renamed into place, the manifest last."""
    total = sum(int(s.keep.sum()) for s in scanned)
    images_name, labels_name = _array_names(group)
    images_tmp, labels_tmp = work / images_name, work / labels_name
    images = np.lib.format.open_memmap(
        images_tmp, mode="w+", dtype=np.uint8, shape=(total, CROP_SIZE, CROP_SIZE, 3)
    )
    entries, offset = [], 0
    with tqdm(total=total, desc=f"SVHN {group} crops", unit="img", disable=not progress) as bar:
        for s in scanned:
            _crop_split(s, images, offset, bar)
            kept = int(s.keep.sum())
            entries.append(
                {
                    "split": s.archive.split,
                    "archive": s.archive.name,
                    "size": s.archive.size,
                    "sha256": s.archive.sha256,
                    "images": len(s.digits),
                    "kept": kept,
                    "dropped": s.dropped,
                    "no_digits": s.no_digits,
                    "offset": offset,
                }
            )
            offset += kept
    images.flush()
    del images
    labels = np.concatenate([s.labels for s in scanned]) if scanned else np.zeros((0, MAX_DIGITS), np.uint8)
    np.save(labels_tmp, labels)
    for tmp in (images_tmp, labels_tmp):
        fsync(tmp)
    manifest = {
        "version": MANIFEST_VERSION,
        "dataset": "svhn-format1",
        "group": group,
        "count": total,
        "dropped": sum(s.dropped for s in scanned),
        "no_digits": sum(s.no_digits for s in scanned),
        "crop_size": CROP_SIZE,
        "enlarge": ENLARGE,
        "max_digits": MAX_DIGITS,
        "no_digit_label": NO_DIGIT,
        "archives": entries,
        "images": {
            "file": images_name,
            "shape": [total, CROP_SIZE, CROP_SIZE, 3],
            "dtype": "uint8",
            "bytes": images_tmp.stat().st_size,
        },
        "labels": {
            "file": labels_name,
            "shape": [total, MAX_DIGITS],
            "dtype": "uint8",
            "bytes": labels_tmp.stat().st_size,
        },
    }
    manifest_tmp = work / "manifest.json"
    manifest_tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    fsync(manifest_tmp)
    os.replace(images_tmp, out_dir / images_name)
    os.replace(labels_tmp, out_dir / labels_name)
    os.replace(manifest_tmp, _manifest_path(out_dir, group))
    return manifest


def _say(message: str, progress: bool) -> None:
    logger.info(message)
    if progress:
        print(message, file=sys.stderr)


def prepare_svhn(
    root: Path | str,
    out_dir: Path | str | None = None,
    splits: Sequence[str] = ("train", "extra", "test"),
    *,
    files: Mapping[str, SVHNArchive] = SVHN_FILES,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
    timeout: float = 60,
    attempts: int = 3,
    workers: int | None = None,
) -> dict[str, dict]:
    """Prepare SVHN format 1 once into cached uint8 arrays: the Goodfellow et al. (2013) crops.

    The archives of ``splits`` are fetched into ``root`` and verified (:func:`download_svhn`;
    ``mirrors=()`` for offline use). Each group of :data:`GROUPS` with a requested split, ``train``
    (train, then extra) and ``test``, is written to ``out_dir`` (default ``root / "prepared"``):

    - ``<group>_images.npy``: uint8 ``[N, 64, 64, 3]``, each image's union box enlarged by 30% in
      x and y, cropped (zeros outside the image) and resized (:func:`crop_and_resize`);
    - ``<group>_labels.npy``: uint8 ``[N, 5]``, the digits 0-9 left to right, 10 = no digit;
    - ``<group>.json``: the manifest: counts, sequences dropped for more than 5 digits, each
      archive's SHA-256 and its rows' offset in the arrays.

    Sequences of more than 5 digits are dropped and counted (logged, and in the manifest). The
    archives are read as streams, twice (first ``digitStruct.mat`` and the list of PNGs, then the
    images): nothing is unpacked to disk under a member's name, so no member can write outside
    ``out_dir``. Every file is written under a temporary folder in ``out_dir`` and renamed into
    place, the manifest last, and an old manifest is deleted before its arrays are replaced: an
    interrupted run leaves no cache that a rerun or :func:`load_prepared` accepts (only a
    ``.<group>-work-*`` folder, never read). A group whose manifest names the same archives (by
    SHA-256) and whose arrays match it is left as it is, without looking at the archives.

    Args:
        files: the expected archives by split (name, size, SHA-256, image count).
        workers: processes that parse each ``digitStruct.mat`` (see :func:`read_digit_struct`).

    Returns:
        The manifest of each requested group.

    Raises:
        stn.data.download.DownloadError: an archive with a wrong size or checksum, or none to get.
        SVHNFormatError: a broken archive, no ``digitStruct.mat``, a PNG that does not decode, or a
            ``digitStruct.mat`` whose rows are not the images; each names the file and the fix.
    """
    root = Path(root)
    out_dir = root / "prepared" if out_dir is None else Path(out_dir)
    for split in splits:
        _archive(files, split)
    wanted = {g: tuple(s for s in members if s in splits) for g, members in GROUPS.items()}
    wanted = {g: members for g, members in wanted.items() if members}
    if set(splits) - {s for members in GROUPS.values() for s in members}:
        raise ValueError(
            f"splits must be among {[s for m in GROUPS.values() for s in m]}, got {list(splits)}"
        )
    result, todo = {}, {}
    for group, members in wanted.items():
        archives = [files[s] for s in members]
        manifest = _up_to_date(out_dir, group, archives)
        if manifest is not None:
            _say(f"SVHN {group}: {_manifest_path(out_dir, group)} is up to date", progress)
            result[group] = manifest
        else:
            todo[group] = archives
    if not todo:
        return result
    paths = download_svhn(
        root,
        [a.split for archives in todo.values() for a in archives],
        files=files,
        mirrors=mirrors,
        progress=progress,
        timeout=timeout,
        attempts=attempts,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    for group, archives in todo.items():
        _manifest_path(out_dir, group).unlink(missing_ok=True)  # the old cache is stale from here
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{group}-work-") as work:
            scanned = [_scan(a, paths[a.split], Path(work), workers) for a in archives]
            for s in scanned:
                _say(
                    f"SVHN {s.archive.split}: {int(s.keep.sum())} of {len(s.digits)} images kept, "
                    f"{s.dropped} dropped for more than {MAX_DIGITS} digits"
                    + (f", {s.no_digits} without digits" if s.no_digits else ""),
                    progress,
                )
            result[group] = _prepare_group(out_dir, group, scanned, Path(work), progress)
    return {g: result[g] for g in wanted}


def load_prepared(out_dir: Path | str, group: str, mode: str = "r") -> tuple[np.ndarray, np.ndarray]:
    """The prepared ``group`` (``"train"``: train then extra in one array; ``"test"``) as
    read-only memory maps: images uint8 ``[N, 64, 64, 3]`` and labels uint8 ``[N, 5]`` (10 = no
    digit). Nothing is read into memory until indexed.

    ``mode`` is :func:`numpy.load`'s ``mmap_mode``: ``"r"`` (read-only) or ``"c"`` (copy on write:
    writable arrays whose writes stay in memory and never reach the files, as
    :func:`torch.from_numpy` wants them).

    Raises:
        FileNotFoundError: the group is not prepared (or its preparation did not finish).
        SVHNFormatError: its arrays do not match its manifest.
    """
    out_dir = Path(out_dir)
    if group not in GROUPS:
        raise ValueError(f"unknown SVHN group {group!r}; known: {', '.join(GROUPS)}")
    manifest = read_manifest(out_dir, group)
    if manifest is None:
        raise FileNotFoundError(
            f"{_manifest_path(out_dir, group)} is missing or unreadable: SVHN {group} is not prepared; "
            "run prepare_svhn first"
        )
    try:
        problem = check_arrays(out_dir, manifest)
    except (KeyError, TypeError) as err:
        problem = f"{_manifest_path(out_dir, group)} is malformed ({err!r})"
    if problem is not None:
        raise SVHNFormatError(
            f"{problem}: the prepared SVHN {group} set is broken; delete "
            f"{_manifest_path(out_dir, group)} and rerun prepare_svhn"
        )
    if mode not in ("r", "c"):
        raise ValueError(f"mode must be 'r' or 'c', got {mode!r}")
    images_name, labels_name = _array_names(group)
    return np.load(out_dir / images_name, mmap_mode=mode), np.load(out_dir / labels_name, mmap_mode=mode)


# ---------------------------------------------------------------------------------------------
# The data set (stn.data.base) and its task

SPLIT_NAMES: tuple[str, ...] = tuple(s for members in GROUPS.values() for s in members)
DEFAULT_SPLITS: tuple[str, ...] = ("train", "extra", "test")


@dataclass(frozen=True)
class SVHNTask(Task):
    """The SVHN multi-digit task: the prepared 64x64 crops, as they are or randomly cropped.

    random_crop: ``None`` (the default, as the authors trained: the whole 64x64 crop), or the side
    ``S`` of a square crop: training draws a random ``S x S`` window of each 64x64 image (offsets
    uniform over the whole image, per image and step), the test set takes the centre window. The
    network then reads ``S x S`` inputs, so the run's ``task.canvas`` must be ``S``. Goodfellow et
    al. (2013) trained on random 54x54 crops; the STN authors did not, and their network (four
    2x2 poolings, Torch) needs sides divisible by 16. Our ``svhn`` backbone floors its poolings, so
    it builds for any side (54 -> 27 -> 13 -> 6 -> 3), but its last maps then drop edge pixels:
    use 48 or 64 where a side divisible by 16 matters.

    There is no pose: :meth:`undo` returns ``None``, and an oracle transformer, which needs one,
    refuses to run (:class:`stn.networks` says so). ``rotation`` is 0: no rotation measures.
    """

    name: str = "SVHN"
    rotation: float = 0.0
    random_crop: int | None = None
    size: int = dataclasses.field(default=CROP_SIZE, repr=False)

    def __post_init__(self) -> None:
        crop = self.random_crop
        if crop is not None and (
            isinstance(crop, bool) or not isinstance(crop, int) or not 1 <= crop <= self.size
        ):
            raise ValueError(
                f"task {self.name!r}: random_crop must be null or a side in [1, {self.size}], got {crop!r}"
            )
        if self.rotation != 0:
            raise ValueError(f"task {self.name!r}: SVHN has no rotation augmentation (rotation must be 0)")

    @property
    def canvas(self) -> int:
        """The side of the network's inputs."""
        return self.size if self.random_crop is None else self.random_crop

    # the task interface of stn.data.base
    def draw(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> dict[str, Tensor]:
        """Nothing without a random crop; else each image's crop offset (B, 2) as (row, column)."""
        if self.random_crop is None:
            return {}
        span = self.size - self.random_crop + 1
        return {"offset": torch.randint(0, span, (batch, 2), generator=generator, device=device)}

    def render(self, images: Tensor, draws: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Float inputs (B, 3, S, S) in [0, 1] from uint8 crops (B, 64, 64, 3); the drawn parameters
        (``offset`` where cropping, else none). No host synchronisation (CUDA graphs)."""
        if self.random_crop is None:
            return images.permute(0, 3, 1, 2).float().div_(255.0), {}
        offset = draws["offset"]
        steps = torch.arange(self.random_crop, device=images.device)
        rows = (offset[:, 0, None] + steps)[:, :, None]  # (B, S, 1)
        cols = (offset[:, 1, None] + steps)[:, None, :]  # (B, 1, S)
        batch = torch.arange(len(images), device=images.device)[:, None, None]
        window = images[batch, rows, cols]  # (B, S, S, 3)
        return window.permute(0, 3, 1, 2).float().div_(255.0), {"offset": offset}

    def undo(self, params: dict[str, Tensor]) -> None:
        """No pose: ``None`` (see the class)."""
        return None

    def test_set(self, images: Tensor, labels: Tensor, seed: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Every test crop as the network reads it, uint8 (N, 3, S, S) (the centre window with a
        random crop), its labels (N, 5) and no parameters. Deterministic: ``seed`` is unused."""
        start = (self.size - self.canvas) // 2
        window = images[:, start : start + self.canvas, start : start + self.canvas]
        return window.permute(0, 3, 1, 2).contiguous(), labels.long().contiguous(), {}


@register_dataset("svhn")
class SVHN(DataSet):
    """SVHN format 1 with the Goodfellow et al. (2013) crops (:func:`prepare_svhn`).

    A run's ``data`` section:

    - ``root``: the folder of the archives (downloaded there, or placed there by hand); the
      prepared arrays are cached in ``root/prepared``;
    - ``mirrors``: base URLs to download from; ``null`` (the default) means SVHN's own,
      http://ufldl.stanford.edu/housenumbers/; ``[]`` never downloads;
    - ``splits`` (optional): the archives to use, default ``[train, extra, test]``. Training uses
      train, and extra where listed (after train, in one array); testing uses test. Both
      ``train`` and ``test`` are needed; leaving out extra (1.9 GB) makes a quick run;
    - ``archives`` (optional): replaces the published size, SHA-256 and image count of some
      splits, ``{split: {size, sha256, images}}``, to use other (e.g. generated) archives.

    :meth:`load` prepares once (a valid cache is reused without reading the archives) and returns
    the images as tensors on the memory maps of the cached arrays, never all read into memory:
    uint8 ``(N, 64, 64, 3)``, copy-on-write (writes stay in memory, never reach the cache), with
    int64 labels ``(N, 5)`` (10 = no digit). Training gathers each batch from the map on the
    CPU, or moves the whole set onto the GPU.
    """

    image_shape = (CROP_SIZE, CROP_SIZE, 3)
    label_shape = (MAX_DIGITS,)
    label_values = NO_DIGIT + 1

    def splits(self, data: Mapping) -> tuple[str, ...]:
        """The splits a ``data`` section uses, in SVHN_FILES order."""
        splits = data.get("splits") or DEFAULT_SPLITS
        unknown = [s for s in splits if s not in SPLIT_NAMES]
        if unknown:
            raise ValueError(f"unknown SVHN splits {unknown}; known: {', '.join(SPLIT_NAMES)}")
        missing = [s for s in ("train", "test") if s not in splits]
        if missing:
            raise ValueError(
                f"SVHN data needs the splits train and test (extra is optional); missing: {missing}"
            )
        return tuple(s for s in SPLIT_NAMES if s in splits)

    def files(self, data: Mapping) -> dict[str, SVHNArchive]:
        """The expected archives: the published ones, with ``data["archives"]`` replacing some."""
        files = dict(SVHN_FILES)
        for split, record in (data.get("archives") or {}).items():
            if split not in files:
                raise ValueError(f"archives: unknown SVHN split {split!r}; known: {', '.join(files)}")
            try:
                files[split] = SVHNArchive(
                    f"{split}.tar.gz", int(record["size"]), str(record["sha256"]), int(record["images"])
                )
            except (KeyError, TypeError) as err:
                raise ValueError(f"archives.{split} needs size, sha256 and images, got {record!r}") from err
        return files

    def mirrors(self, data: Mapping) -> Sequence[str] | None:
        """The mirrors to download from; ``None`` means each archive's own URL."""
        return data.get("mirrors")

    def train_size(self, data: dict) -> int:
        """The training crops before dropping the few longer than 5 digits."""
        files = self.files(data)
        return sum(files[split].images for split in self.splits(data) if split != "test")

    def raw_files(self, data: dict) -> list[Path]:
        files = self.files(data)
        return [Path(data["root"]) / files[s].name for s in self.splits(data)]

    def fetch(self, data: dict, target: Path) -> None:
        target = Path(target)
        files = self.files(data)
        matches = [s for s in self.splits(data) if files[s].name == target.name]
        if not matches:
            known = ", ".join(files[s].name for s in self.splits(data))
            raise ValueError(f"{target}: not an SVHN archive of this data section (known: {known})")
        download_svhn(target.parent, matches, files=files, mirrors=self.mirrors(data))

    def load(self, data: dict) -> Splits:
        root = Path(data["root"])
        prepare_svhn(root, splits=self.splits(data), files=self.files(data), mirrors=self.mirrors(data))
        out = []
        for group in ("train", "test"):
            images, labels = load_prepared(root / "prepared", group, mode="c")
            out += [torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))]
        return Splits(*out)

    def task(self, settings: dict) -> SVHNTask:
        name = settings.get("name", "SVHN")
        task = SVHNTask(name=name, random_crop=settings.get("random_crop"))
        if "canvas" in settings and settings["canvas"] != task.canvas:
            raise ValueError(
                f"task {name!r}: canvas is the network's input side and must be {task.canvas} "
                f"(64, or random_crop where set), got {settings['canvas']}"
            )
        return task
