"""The official MNIST raw files: checksums, mirrors, an IDX reader and a verified loader."""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from stn.data.download import RemoteFile, candidates, fetch_all

# Names, MD5s and mirrors as in torchvision.datasets.MNIST; the MD5s of the decompressed content
# (which also verify the uncompressed IDX files of the same name without .gz) are not computed
# here, where the files cannot be downloaded: they are the values published by several independent
# projects for the uncompressed files (47040016, 60008, 7840016 and 10008 bytes).
MNIST_FILES: dict[str, RemoteFile] = {
    "train_images": RemoteFile(
        "train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"
    ),
    "train_labels": RemoteFile(
        "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"
    ),
    "test_images": RemoteFile(
        "t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"
    ),
    "test_labels": RemoteFile(
        "t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"
    ),
}

# torchvision.datasets.MNIST(root) keeps its raw files here; they are used where present.
TORCHVISION_RAW = Path("MNIST") / "raw"

DEFAULT_MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

# IDX data type codes (third magic byte); all values are stored big-endian.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed if its name ends with ``.gz``) into a native-endian array.

    Raises:
        ValueError: the file is not valid gzip, or its header or size is not valid IDX.
    """
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: not a valid gzip file ({err})") from err
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    if data[:2] != b"\x00\x00":
        raise ValueError(f"{path}: bad IDX magic number 0x{data[:4].hex()} (must start with 0x0000)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX data type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated header, {ndim} dimensions declared")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path}: shape {shape} needs {expected} data bytes, found {len(data) - header}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _check_split(split: str, images: np.ndarray, labels: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"MNIST {split} images must be uint8 [N, 28, 28], got {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"MNIST {split} labels must be 1-D, got shape {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"MNIST {split}: {len(images)} images but {len(labels)} labels")


def present_mnist_files(root: Path | str, files: Mapping[str, RemoteFile] = MNIST_FILES) -> list[Path]:
    """For each MNIST file, the copy :func:`load_official_mnist` would use, or ``root / name`` (the
    download target) where none is present: the inputs of a workflow rule that reads them."""
    root = Path(root)
    found = []
    for file in files.values():
        present = [p for p in candidates(file, [root, root / TORCHVISION_RAW]) if p.exists()]
        found.append(present[0] if present else root / file.name)
    return found


def load_official_mnist(
    root: Path,
    mirrors: Sequence[str] = DEFAULT_MNIST_MIRRORS,
    *,
    progress: bool = True,
    files: Mapping[str, RemoteFile] = MNIST_FILES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fetch and verify the four MNIST raw files into ``root`` and parse them.

    Files already present in ``root`` or in its torchvision-style ``MNIST/raw`` folder, as the
    ``.gz`` archives or uncompressed, are verified and used without touching the network.

    Returns:
        ``(train_images, train_labels, test_images, test_labels)``: images uint8 ``[N, 28, 28]``,
        labels int64 ``[N]``.
    """
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    root = Path(root)
    paths = fetch_all(
        [files[k] for k in keys], root, mirrors, progress=progress, also_in=[root / TORCHVISION_RAW]
    )
    train_x, train_y, test_x, test_y = (read_idx(p) for p in paths)
    _check_split("train", train_x, train_y)
    _check_split("test", test_x, test_y)
    return train_x, train_y.astype(np.int64), test_x, test_y.astype(np.int64)
