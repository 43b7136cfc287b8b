"""A writer of ``digitStruct.mat`` in MATLAB's v7.3 layout of SVHN format 1, for the tests'
generated archives (see :mod:`stn.data.svhn.digit_struct` for the layout)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
from h5py import h5a, h5d, h5r, h5s, h5t

from stn.data.svhn.digit_struct import BOX_FIELDS

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
