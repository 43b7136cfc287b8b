"""The ``digitStruct.mat`` of an SVHN format-1 split: a MATLAB v7.3 (HDF5) file whose row ``i``
describes the image ``(i+1).png``:

- ``digitStruct/name`` and ``digitStruct/bbox`` are ``(N, 1)`` datasets of object references;
- a name points to a ``(len, 1)`` uint16 dataset of characters;
- a bbox points to a group with the datasets ``height``, ``label``, ``left``, ``top`` and
  ``width``: for one box each is an inline ``(1, 1)`` number, for ``k`` boxes a ``(k, 1)`` array
  of references, each to a ``(1, 1)`` number;
- label 10 is the digit 0.

:func:`read_digit_struct` parses it into a columnar :class:`DigitStruct` (one offset per image and
flat arrays of box coordinates and digits). h5py has no bulk dereference, so the reader goes
through the low-level API (no high-level ``Dataset`` objects, one preallocated buffer per shape),
reads the tiny datasets straight from the file's bytes (:class:`_RawObjects`) and splits the rows
over worker processes for large files.
"""

from __future__ import annotations

import itertools
import math
import mmap
import multiprocessing
import os
from array import array
from dataclasses import dataclass
from pathlib import Path
from struct import unpack_from as _unpack_from

import h5py
import numpy as np
from h5py import h5d, h5r, h5s, h5t

BOX_FIELDS: tuple[str, ...] = ("height", "label", "left", "top", "width")


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


_Rows = tuple[np.ndarray, list[np.ndarray], list[str] | None]
"""Parsed rows: each row's box count, the five fields' values (BOX_FIELDS order), the names."""


def _rows(path: Path, lo: int, hi: int, read_names: bool) -> _Rows:
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


def _default_workers(n: int) -> int:
    """The worker processes for ``n`` rows: one per 20,000, at most one per available CPU."""
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
    n = _row_count(path, fix)
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
            parts = pool.starmap(_rows, jobs)
    return _digit_struct(path, parts, names, fix)


def _row_count(path: Path, fix: str) -> int:
    """The rows of a ``digitStruct.mat`` whose layout is format 1's (see the module)."""
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
    return n_bbox


def _digit_struct(path: Path, parts: list[_Rows], names: bool, fix: str) -> DigitStruct:
    """The :class:`DigitStruct` of the consecutive row ranges ``parts`` (:func:`_rows`), their
    labels and (where read) names checked."""
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
    start = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=start[1:])
    all_names = None
    if names:
        all_names = [s for p in parts for s in p[2]]
        for i, name in enumerate(all_names):
            if name != f"{i + 1}.png":
                raise SVHNFormatError(f"{path}: row {i} names {name!r}, expected '{i + 1}.png'; {fix}")
    return DigitStruct(start, left, top, width, height, label, all_names)
