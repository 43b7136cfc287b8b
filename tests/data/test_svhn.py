"""SVHN format 1 on a generated miniature: digitStruct.mat parsing, Goodfellow crops, labels, errors;
the three archives served over local HTTP, downloaded, verified and prepared into cached arrays."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from stn.data.download import DownloadError, RemoteFile
from stn.data.svhn import digit_struct
from stn.data.svhn import prepare as svhn_prepare
from stn.data.svhn.archives import SVHN_FILES, SVHN_URL, SVHNArchive, download_svhn
from stn.data.svhn.crops import (
    all_sequence_labels,
    crop,
    crop_and_resize,
    crop_box,
    decode_png,
    length_filter,
)
from stn.data.svhn.digit_struct import DigitStruct, SVHNFormatError, read_digit_struct
from stn.data.svhn.prepare import load_prepared, prepare_svhn
from tests.data.mat_writer import write_digit_struct
from tests.file_modes import UMASKS, modes, open_modes, umask
from tests.local_http import closed_port_url, serve

# (left, top, width, height, label) per image; label 10 is the digit 0
BOXES = [
    [(10, 5, 8, 20, 1)],  # one box
    [(4, 6, 6, 12, 10), (12, 7, 6, 12, 3)],  # two boxes, a 0 then a 3
    [(2, 2, 5, 10, 7), (8, 2, 5, 10, 10), (14, 3, 5, 10, 2)],
    [(x, 4, 4, 10, d) for x, d in zip(range(1, 25, 4), (1, 2, 3, 4, 5, 6), strict=True)],  # 6 digits
    [(-4, 20, 10, 16, 9)],  # reaches outside the image (left and bottom)
]
SIZES = [(30, 40), (24, 30), (22, 24), (26, 20), (20, 28)]  # (width, height) of each PNG


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    """A miniature ``train/`` folder: real PNGs and a v7.3-layout digitStruct.mat."""
    root = tmp_path_factory.mktemp("svhn") / "train"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(SIZES):
        pixels = rng.integers(1, 256, size=(h, w, 3), dtype=np.uint8)  # no zeros: padding is visible
        Image.fromarray(pixels).save(root / f"{i + 1}.png")
    write_digit_struct(root / "digitStruct.mat", BOXES)
    return root


def test_archive_records():
    assert [(f.name, f.size, f.images) for f in SVHN_FILES.values()] == [
        ("train.tar.gz", 404141560, 33402),
        ("test.tar.gz", 276555967, 13068),
        ("extra.tar.gz", 1955489752, 202353),
    ]
    assert {f.base_url for f in SVHN_FILES.values()} == {"http://ufldl.stanford.edu/housenumbers/"}
    assert SVHN_FILES["test"].split == "test"
    assert all(len(f.sha256) == 64 for f in SVHN_FILES.values())


def test_written_file_has_matlab_layout(split):
    path = split / "digitStruct.mat"
    assert path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    with h5py.File(path, "r") as f:
        assert f["digitStruct/name"].shape == f["digitStruct/bbox"].shape == (5, 1)
        assert f["digitStruct/bbox"].dtype == h5py.ref_dtype
        one = f[f["digitStruct/bbox"][0, 0]]
        assert sorted(one) == ["height", "label", "left", "top", "width"]
        assert one["label"].shape == (1, 1) and one["label"][0, 0] == 1
        two = f[f["digitStruct/bbox"][1, 0]]
        assert two["label"].shape == (2, 1) and two["label"].dtype == h5py.ref_dtype
        assert f[two["label"][0, 0]][0, 0] == 10
        name = f[f["digitStruct/name"][1, 0]]
        assert name.dtype == np.uint16 and name.attrs["MATLAB_class"] == b"char"
        assert name[:, 0].tobytes().decode("utf-16-le") == "2.png"


def _expected() -> tuple[list[list[float]], list[int]]:
    flat = [b for row in BOXES for b in row]
    return [list(map(float, b[:4])) for b in flat], [b[4] % 10 for b in flat]


@pytest.mark.parametrize(
    ("raw", "workers"), [(True, 1), (False, 1), (True, 2)], ids=["raw", "h5py", "2-workers"]
)
def test_parse_returns_the_written_boxes(split, monkeypatch, raw, workers):
    if not raw:  # the fallback through h5py gives the same result
        monkeypatch.setattr(digit_struct._RawObjects, "box_row", lambda self, a: None)
        monkeypatch.setattr(digit_struct._RawObjects, "text", lambda self, a: None)
    ds = read_digit_struct(split / "digitStruct.mat", expected=5, workers=workers)
    assert len(ds) == 5
    assert ds.names == [f"{i}.png" for i in range(1, 6)]
    assert ds.start.tolist() == [0, 1, 3, 6, 12, 13]
    assert ds.counts.tolist() == [1, 2, 3, 6, 1]
    boxes, labels = _expected()
    got = np.stack([ds.left, ds.top, ds.width, ds.height], axis=1)
    np.testing.assert_array_equal(got, np.array(boxes))
    assert ds.label.tolist() == labels  # 10 -> 0
    assert ds.labels(1).tolist() == [0, 3]
    np.testing.assert_array_equal(ds.boxes(1), [[4, 6, 6, 12], [12, 7, 6, 12]])


def test_crop_boxes_by_hand():
    # union (10, 5)-(18, 25): centre (14, 15), size 8 x 20 -> 10.4 x 26 -> x 8.8..19.2, y 2..28
    assert crop_box(np.array([[10, 5, 8, 20]]), 30, 40) == (8, 2, 20, 28)
    # union (4, 6)-(18, 19): centre (11, 12.5), size 14 x 13 -> 18.2 x 16.9 -> x 1.9..20.1, y 4.05..20.95
    assert crop_box(np.array([[4, 6, 6, 12], [12, 7, 6, 12]]), 24, 30) == (1, 4, 21, 21)
    # union (-4, 20)-(6, 36): centre (1, 28), size 10 x 16 -> 13 x 20.8 -> x -5.5..7.5, y 17.6..38.4
    assert crop_box(np.array([[-4, 20, 10, 16]]), 20, 28) == (-6, 17, 8, 39)
    # exact edges stay where they are: 10 x 10 -> 13 x 13 about (5, 5)
    assert crop_box(np.array([[0, 0, 10, 10]]), 20, 20) == (-2, -2, 12, 12)
    with pytest.raises(ValueError, match="outside"):
        crop_box(np.array([[50, 50, 4, 4]]), 20, 20)
    with pytest.raises(ValueError, match="no boxes"):
        crop_box(np.zeros((0, 4)), 20, 20)


def load_png(path: Path) -> np.ndarray:
    """An extracted PNG of the miniature as RGB uint8 ``[H, W, 3]``."""
    return decode_png(path.read_bytes(), str(path))


def test_crop_pads_outside_the_image_with_zeros(split):
    image = load_png(split / "5.png")
    assert image.shape == (28, 20, 3) and image.dtype == np.uint8
    box = crop_box(np.array([[-4, 20, 10, 16]]), 20, 28)  # (-6, 17, 8, 39)
    patch = crop(image, box)
    assert patch.shape == (22, 14, 3)
    np.testing.assert_array_equal(patch[:11, 6:], image[17:28, 0:8])
    assert not patch[:, :6].any() and not patch[11:].any()  # left of x=0 and below y=28
    assert patch[:11, 6:].all()
    # resized to 64 x 64 the padded region stays zero away from the seam
    out = crop_and_resize(image, box)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert not out[:, :25].any() and not out[34:].any()
    assert out[:30, 30:].all()
    # a crop of 64 x 64 is returned unresampled
    big = np.random.default_rng(1).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop_and_resize(big, (5, 6, 69, 70)), big[6:70, 5:69])


def test_crop_of_every_image_in_the_split(split):
    ds = read_digit_struct(split / "digitStruct.mat", expected=5)
    keep, _ = length_filter(ds)
    for i in np.flatnonzero(keep):
        image = load_png(split / ds.names[i])
        box = crop_box(ds.boxes(i), image.shape[1], image.shape[0])
        assert crop_and_resize(image, box, size=32).shape == (32, 32, 3)


def test_labels_are_padded_with_10_and_long_sequences_dropped(split):
    ds = read_digit_struct(split / "digitStruct.mat", expected=5)
    keep, dropped = length_filter(ds)
    assert keep.tolist() == [True, True, True, False, True] and dropped == 1
    labels = all_sequence_labels(ds)
    assert labels.shape == (5, 5)
    assert labels[[0, 1, 2, 4]].tolist() == [
        [1, 10, 10, 10, 10],
        [0, 3, 10, 10, 10],
        [7, 0, 2, 10, 10],
        [9, 10, 10, 10, 10],
    ]
    for i in np.flatnonzero(keep):  # each image's digits, the file's 10 as 0, padded with 10
        digits = [int(d) % 10 for d in ds.labels(i)]
        assert labels[i].tolist() == digits + [10] * (5 - len(digits))
    assert length_filter(np.array([1, 5, 6, 7, 2]))[1] == 2


def test_row_count_mismatch_names_the_file_and_both_counts(split):
    path = split / "digitStruct.mat"
    with pytest.raises(SVHNFormatError, match=r"digitStruct\.mat has 5 rows but 33402 images"):
        read_digit_struct(path, expected=SVHN_FILES["train"].images)
    try:
        read_digit_struct(path, expected=4)
    except SVHNFormatError as err:
        assert str(path) in str(err)


def test_missing_digit_struct_group(tmp_path):
    path = tmp_path / "digitStruct.mat"
    with h5py.File(path, "w") as f:
        f.create_group("other")
    with pytest.raises(SVHNFormatError, match="no 'digitStruct' group") as err:
        read_digit_struct(path)
    assert str(path) in str(err.value)
    path.write_bytes(b"not hdf5")
    with pytest.raises(SVHNFormatError, match=r"not a readable MATLAB v7\.3"):
        read_digit_struct(path)


def test_wrong_names_are_an_error(tmp_path):
    path = tmp_path / "digitStruct.mat"
    write_digit_struct(path, BOXES[:2], names=["1.png", "3.png"])
    with pytest.raises(SVHNFormatError, match=r"row 1 names '3.png', expected '2.png'"):
        read_digit_struct(path)
    assert len(read_digit_struct(path, names=False)) == 2


def test_png_that_does_not_decode_names_the_file(tmp_path, split):
    truncated = (split / "1.png").read_bytes()[:60]
    with pytest.raises(SVHNFormatError, match=r"train/7\.png: the image does not decode .*delete it"):
        decode_png(truncated, "train/7.png")


def test_grey_png_becomes_rgb(tmp_path):
    Image.fromarray(np.full((4, 5), 7, np.uint8)).save(tmp_path / "g.png")
    image = load_png(tmp_path / "g.png")
    assert image.shape == (4, 5, 3) and (image == 7).all()


def test_digit_struct_is_columnar():
    ds = DigitStruct(
        np.array([0, 2, 3]), *(np.arange(3.0) + k for k in range(4)), label=np.array([1, 2, 3]), names=None
    )
    assert len(ds) == 2 and ds.counts.tolist() == [2, 1]
    assert ds.boxes(1).tolist() == [[2.0, 3.0, 4.0, 5.0]]


# ---------------------------------------------------------------------------------------------
# Download, verification and preparation of generated format-1 archives served over HTTP

# Per split: (left, top, width, height, label) per image and (width, height) of each PNG. train is
# BOXES above (one box, several, a 6-digit sequence, a box reaching outside the image).
EXTRA_BOXES = [[(3, 3, 6, 10, 4), (9, 3, 6, 10, 2)], [(1, 2, 8, 14, 10)]]
EXTRA_SIZES = [(20, 18), (12, 20)]
TEST_BOXES = [[(2, 1, 6, 12, 5)], [(0, 0, 10, 10, 10)], [(2, 2, 4, 8, 1), (7, 2, 4, 8, 2), (12, 3, 4, 8, 3)]]
TEST_SIZES = [(18, 16), (20, 20), (22, 14)]
SPLITS = {"train": (BOXES, SIZES), "extra": (EXTRA_BOXES, EXTRA_SIZES), "test": (TEST_BOXES, TEST_SIZES)}

# The crops of the kept images, computed by hand (see test_crop_boxes_by_hand for the first ones):
HAND_BOXES = {
    "train": [(8, 2, 20, 28), (1, 4, 21, 21), (-1, 0, 22, 15), (-6, 17, 8, 39)],  # 4.png dropped
    # union (3, 3)-(15, 13), 12 x 10 -> 15.6 x 13 about (9, 8); (1, 2)-(9, 16) -> 10.4 x 18.2 about (5, 9)
    "extra": [(1, 1, 17, 15), (-1, -1, 11, 19)],
    # (2, 1)-(8, 13) -> 7.8 x 15.6 about (5, 7); 10 x 10 at 0; (2, 2)-(16, 11) -> 18.2 x 11.7 about (9, 6.5)
    "test": [(1, -1, 9, 15), (-2, -2, 12, 12), (-1, 0, 19, 13)],
}
HAND_LABELS = {
    "train": [[1, 10, 10, 10, 10], [0, 3, 10, 10, 10], [7, 0, 2, 10, 10], [9, 10, 10, 10, 10]],
    "extra": [[4, 2, 10, 10, 10], [0, 10, 10, 10, 10]],
    "test": [[5, 10, 10, 10, 10], [0, 10, 10, 10, 10], [1, 2, 3, 10, 10]],
}


def split_members(split: str, work: Path, seed: int) -> dict[str, bytes]:
    """The files of one format-1 split folder: real PNGs and a v7.3 digitStruct.mat."""
    boxes, sizes = SPLITS[split]
    rng = np.random.default_rng(seed)
    members = {}
    for i, (w, h) in enumerate(sizes):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(1, 256, size=(h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
        members[f"{split}/{i + 1}.png"] = buf.getvalue()
    mat = work / f"{split}-{seed}.mat"
    write_digit_struct(mat, boxes)
    members[f"{split}/digitStruct.mat"] = mat.read_bytes()
    return members


def pack(members: dict[str, bytes], hostile: bool = False) -> bytes:
    """A .tar.gz of ``members``; ``hostile`` adds a member escaping upwards and a symlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if hostile:
            split = next(iter(members)).split("/")[0]
            info = tarfile.TarInfo("../escape.png")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
            link = tarfile.TarInfo(f"{split}/99.png")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
    return buf.getvalue()


def archive_record(split: str, blob: bytes, images: int | None = None) -> SVHNArchive:
    n = len(SPLITS[split][1]) if images is None else images
    return SVHNArchive(f"{split}.tar.gz", len(blob), hashlib.sha256(blob).hexdigest(), n)


@dataclass
class Mini:
    """Generated archives (name -> bytes), their members, and the records that verify them."""

    members: dict[str, dict[str, bytes]]
    blobs: dict[str, bytes]
    files: dict[str, SVHNArchive]
    images: dict[str, list[np.ndarray]]

    def place(self, root: Path, blobs: dict[str, bytes] | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        for name, blob in (blobs or self.blobs).items():
            (root / name).write_bytes(blob)


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Mini:
    work = tmp_path_factory.mktemp("mini")
    members = {s: split_members(s, work, seed) for seed, s in enumerate(SPLITS)}
    blobs = {f"{s}.tar.gz": pack(m, hostile=s == "train") for s, m in members.items()}
    files = {s: archive_record(s, blobs[f"{s}.tar.gz"]) for s in SPLITS}
    images = {
        s: [np.asarray(Image.open(io.BytesIO(m[f"{s}/{i + 1}.png"]))) for i in range(len(SPLITS[s][1]))]
        for s, m in members.items()
    }
    return Mini(members, blobs, files, images)


@dataclass
class Server:
    """``/good/`` serves the archives, honouring ``Range``; ``/flaky/`` breaks off half-way through
    a file's first request; ``/corrupt/`` flips the last byte; else 404. ``requests``: (path, Range)."""

    base: str
    requests: list[tuple[str, str | None]] = field(default_factory=list)


@pytest.fixture
def server(mini: Mini) -> Iterator[Server]:
    requests: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append((self.path, self.headers.get("Range")))
            mode, _, name = self.path.strip("/").partition("/")
            blob = mini.blobs.get(name)
            if blob is None or mode not in ("good", "flaky", "corrupt"):
                self.send_error(404)
                return
            if mode == "corrupt":
                blob = blob[:-1] + bytes([blob[-1] ^ 0xFF])
            m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            start = int(m.group(1)) if m else 0
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(blob) - 1}/{len(blob)}")
            self.send_header("Content-Length", str(len(blob) - start))
            self.end_headers()
            if mode == "flaky" and [p for p, _ in requests].count(self.path) == 1:
                self.wfile.write(blob[: len(blob) // 2])  # then the connection closes
                self.close_connection = True
                return
            self.wfile.write(blob[start:])

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as base:
        yield Server(base, requests)


@pytest.fixture
def nowhere() -> str:
    """A mirror URL on a local port nobody listens on."""
    return closed_port_url("svhn")


def outputs(out_dir: Path) -> list[str]:
    return sorted(p.name for p in out_dir.iterdir()) if out_dir.exists() else []


def test_download_verifies_and_resumes_a_broken_transfer(tmp_path, mini, server, nowhere):
    root = tmp_path / "raw"
    paths = download_svhn(root, files=mini.files, mirrors=[server.base + "/flaky/"], progress=True, timeout=5)
    assert list(paths) == ["train", "extra", "test"]
    for split, path in paths.items():
        assert path == root / f"{split}.tar.gz" and path.read_bytes() == mini.blobs[path.name]
        half = len(mini.blobs[path.name]) // 2
        # broke off half-way, then resumed from there with a Range request
        assert [r for r in server.requests if r[0] == f"/flaky/{path.name}"] == [
            (f"/flaky/{path.name}", None),
            (f"/flaky/{path.name}", f"bytes={half}-"),
        ]
    assert outputs(root) == ["extra.tar.gz", "test.tar.gz", "train.tar.gz"]  # no .part left
    # present and verified: used without the network
    server.requests.clear()
    assert download_svhn(root, files=mini.files, mirrors=[nowhere], progress=False) == paths
    assert server.requests == []
    # the default mirror is the archive's base URL (an SVHNArchive can name its own)
    moved = {s: dataclasses.replace(a, base_url=server.base + "/good/") for s, a in mini.files.items()}
    assert download_svhn(tmp_path / "raw2", ["test"], files=moved, progress=False)["test"].exists()
    assert SVHN_FILES["train"].base_url == SVHN_URL == "http://ufldl.stanford.edu/housenumbers/"
    assert SVHN_FILES["train"].remote() == RemoteFile(
        "train.tar.gz", sha256=SVHN_FILES["train"].sha256, size=404141560
    )


def test_corrupt_mirror_leaves_nothing_under_the_final_name(tmp_path, mini, server):
    with pytest.raises(DownloadError) as info:
        download_svhn(
            tmp_path, ["test"], files=mini.files, mirrors=[server.base + "/corrupt/"], progress=False
        )
    message = str(info.value)
    assert f"SHA-256 mismatch: expected {mini.files['test'].sha256}" in message
    assert f"place the file at {tmp_path / 'test.tar.gz'} by hand" in message
    assert outputs(tmp_path) == []


def test_wrong_checksum_of_a_placed_archive_names_file_checksums_and_fix(tmp_path, mini, server):
    root = tmp_path / "raw"
    mini.place(root)
    bad = root / "extra.tar.gz"
    bad.write_bytes(mini.blobs["test.tar.gz"])  # another file under the name
    for _ in range(2):  # a rerun does not accept it either
        with pytest.raises(DownloadError) as info:
            prepare_svhn(
                root, tmp_path / "out", files=mini.files, mirrors=[server.base + "/good/"], progress=False
            )
        message = str(info.value)
        assert str(bad) in message
        assert (
            mini.files["extra"].sha256 in message and hashlib.sha256(bad.read_bytes()).hexdigest() in message
        )
        assert "Delete it to download it again, or replace it with the correct file" in message
    assert server.requests == [] and not (tmp_path / "out").exists()
    # a truncated copy is refused by its size as well
    bad.write_bytes(mini.blobs["extra.tar.gz"][:-10])
    with pytest.raises(DownloadError, match=rf"{len(mini.blobs['extra.tar.gz']) - 10} bytes and SHA-256"):
        download_svhn(root, ["extra"], files=mini.files, mirrors=(), progress=False)


def check_prepared(out_dir: Path, mini: Mini) -> None:
    train_x, train_y = load_prepared(out_dir, "train")
    test_x, test_y = load_prepared(out_dir, "test")
    for arr in (train_x, train_y, test_x, test_y):
        assert isinstance(arr, np.memmap) and arr.mode == "r" and arr.dtype == np.uint8
    assert train_x.shape == (6, 64, 64, 3) and train_y.shape == (6, 5)
    assert test_x.shape == (3, 64, 64, 3) and test_y.shape == (3, 5)
    assert train_y.tolist() == HAND_LABELS["train"] + HAND_LABELS["extra"]  # 10 -> 0, padded with 10
    assert test_y.tolist() == HAND_LABELS["test"]
    kept = {"train": [0, 1, 2, 4], "extra": [0, 1], "test": [0, 1, 2]}
    crops = {
        s: [crop_and_resize(mini.images[s][i], box) for i, box in zip(kept[s], HAND_BOXES[s], strict=True)]
        for s in SPLITS
    }
    np.testing.assert_array_equal(train_x, np.stack(crops["train"] + crops["extra"]))
    np.testing.assert_array_equal(test_x, np.stack(crops["test"]))
    for s, (boxes, sizes) in SPLITS.items():  # the hand boxes are the library's
        for i, box in zip(kept[s], HAND_BOXES[s], strict=True):
            assert crop_box(np.array(boxes[i])[:, :4], *sizes[i]) == box
    assert not train_x[3, :, :20].any()  # the crop reaching left of the image is padded with zeros


def test_prepare_writes_memory_mapped_crops_labels_and_manifest(tmp_path, mini, server, nowhere, capsys):
    root, out_dir = tmp_path / "raw", tmp_path / "prepared"
    manifests = prepare_svhn(root, out_dir, files=mini.files, mirrors=[server.base + "/good/"], progress=True)
    assert "SVHN train: 4 of 5 images kept, 1 dropped for more than 5 digits" in capsys.readouterr().err
    assert outputs(out_dir) == sorted(
        [
            "test.json",
            "test_images.npy",
            "test_labels.npy",
            "train.json",
            "train_images.npy",
            "train_labels.npy",
        ]
    )
    check_prepared(out_dir, mini)
    train = json.loads((out_dir / "train.json").read_text())
    assert train == manifests["train"] and (train["count"], train["dropped"]) == (6, 1)
    assert [(a["split"], a["images"], a["kept"], a["dropped"], a["offset"]) for a in train["archives"]] == [
        ("train", 5, 4, 1, 0),
        ("extra", 2, 2, 0, 4),
    ]
    assert [a["sha256"] for a in train["archives"]] == [
        mini.files["train"].sha256,
        mini.files["extra"].sha256,
    ]
    assert manifests["test"]["count"] == 3 and manifests["test"]["dropped"] == 0
    assert not (tmp_path / "escape.png").exists() and not (root / "escape.png").exists()  # nothing extracted

    # a rerun with the cache valid does nothing: no network, archives not even read, files untouched
    stamps = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    for p in root.iterdir():
        p.unlink()
    server.requests.clear()
    assert prepare_svhn(root, out_dir, files=mini.files, mirrors=[nowhere], progress=False) == manifests
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == stamps and server.requests == []
    # other archives (another SHA-256) make the cache stale: redone, from the mirror
    other = dict(mini.files, test=dataclasses.replace(mini.files["test"], sha256="0" * 64))
    with pytest.raises(DownloadError):
        prepare_svhn(root, out_dir, ["test"], files=other, mirrors=[server.base + "/good/"], progress=False)
    assert (out_dir / "train.json").exists()  # other groups are untouched


@pytest.mark.parametrize("mask", UMASKS)
def test_prepared_files_get_the_mode_open_gives_under_the_umask(tmp_path, mini, mask):
    mini.place(tmp_path, {"test.tar.gz": mini.blobs["test.tar.gz"]})
    with umask(mask):
        prepare_svhn(tmp_path, splits=["test"], files=mini.files, mirrors=(), progress=False)
    written = list((tmp_path / "prepared").iterdir())
    assert len(written) == 3 and modes(written) == open_modes(written, mask)  # arrays and manifest


def test_prepare_only_the_test_split_from_placed_files(tmp_path, mini):
    mini.place(tmp_path, {"test.tar.gz": mini.blobs["test.tar.gz"]})
    manifests = prepare_svhn(tmp_path, splits=["test"], files=mini.files, mirrors=(), progress=False)
    assert list(manifests) == ["test"]
    assert outputs(tmp_path / "prepared") == ["test.json", "test_images.npy", "test_labels.npy"]
    assert load_prepared(tmp_path / "prepared", "test")[1].tolist() == HAND_LABELS["test"]
    with pytest.raises(FileNotFoundError, match=r"train\.json is missing.*run prepare_svhn"):
        load_prepared(tmp_path / "prepared", "train")
    with pytest.raises(ValueError, match="unknown SVHN split 'valid'"):
        prepare_svhn(tmp_path, splits=["valid"], files=mini.files, mirrors=(), progress=False)


def test_a_crash_mid_way_leaves_no_cache_a_rerun_accepts(tmp_path, mini, monkeypatch):
    mini.place(tmp_path)
    out_dir = tmp_path / "prepared"
    prepare_svhn(tmp_path, out_dir, files=mini.files, mirrors=(), progress=False)
    # as if the train set had been prepared from an older train.tar.gz: stale, so redone
    manifest = json.loads((out_dir / "train.json").read_text())
    manifest["archives"][0]["sha256"] = "0" * 64
    (out_dir / "train.json").write_text(json.dumps(manifest))
    calls = []

    def dies(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # as if killed while cropping
        return crop_and_resize(*args, **kwargs)

    monkeypatch.setattr(svhn_prepare, "crop_and_resize", dies)
    with pytest.raises(KeyboardInterrupt):
        prepare_svhn(tmp_path, out_dir, files=mini.files, mirrors=(), progress=False)
    assert len(calls) == 4
    # the stale manifest is gone, so the old arrays are not taken for the new ones; test untouched
    assert "train.json" not in outputs(out_dir) and not any(n.startswith(".") for n in outputs(out_dir))
    with pytest.raises(FileNotFoundError, match=r"train\.json is missing"):
        load_prepared(out_dir, "train")
    assert load_prepared(out_dir, "test")[0].shape == (3, 64, 64, 3)
    # a broken array under its final name is refused, with the fix
    (out_dir / "test_labels.npy").write_bytes(b"\x93NUMPY")
    with pytest.raises(SVHNFormatError, match=r"test_labels\.npy has 6 bytes.*delete .*test\.json and rerun"):
        load_prepared(out_dir, "test")
    monkeypatch.undo()
    prepare_svhn(tmp_path, out_dir, files=mini.files, mirrors=(), progress=False)  # the rerun redoes both
    check_prepared(out_dir, mini)


def broken(mini: Mini, tmp_path: Path, split: str, change) -> tuple[dict[str, SVHNArchive], Path]:
    """Place the archives with ``split``'s members changed by ``change``, verified by its own
    checksum (as if published so), so that only the format is wrong."""
    members = dict(mini.members[split])
    blob = change(members)
    if blob is None:
        blob = pack(members)
    mini.place(tmp_path, {**mini.blobs, f"{split}.tar.gz": blob})
    return dict(mini.files, **{split: archive_record(split, blob)}), tmp_path / f"{split}.tar.gz"


def truncate(members):
    return pack(members)[:-300]


def drop_digit_struct(members):
    del members["extra/digitStruct.mat"]


def bad_png(members):
    members["extra/2.png"] = members["extra/2.png"][:40]


def short_digit_struct(members):
    with tempfile.TemporaryDirectory() as d:
        write_digit_struct(Path(d) / "d.mat", EXTRA_BOXES[:1])
        members["extra/digitStruct.mat"] = (Path(d) / "d.mat").read_bytes()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (truncate, r"extra\.tar\.gz: not a complete, readable \.tar\.gz archive \(.*\); delete it and rerun"),
        (drop_digit_struct, r"extra\.tar\.gz: no extra/digitStruct\.mat in the archive.*delete .* and rerun"),
        (bad_png, r"extra\.tar\.gz \(extra/2\.png\): the image does not decode.*delete it and rerun"),
        (
            short_digit_struct,
            r"extra\.tar\.gz \(extra/digitStruct\.mat\): digitStruct\.mat has 1 rows but 2 images are "
            r"expected.*delete .*extra\.tar\.gz and rerun",
        ),
    ],
    ids=["truncated", "no-digitStruct", "bad-png", "row-count"],
)
def test_bad_input_names_the_file_and_the_fix_and_leaves_no_output(tmp_path, mini, change, match):
    files, path = broken(mini, tmp_path, "extra", change)
    out_dir = tmp_path / "prepared"
    with pytest.raises(SVHNFormatError, match=match) as info:
        prepare_svhn(tmp_path, out_dir, files=files, mirrors=(), progress=False)
    assert str(path) in str(info.value)
    assert outputs(out_dir) == []  # not even the temporary folder
    with pytest.raises(FileNotFoundError):
        load_prepared(out_dir, "train")
    # the test group does not depend on the broken archive
    prepare_svhn(tmp_path, out_dir, ["test"], files=files, mirrors=(), progress=False)
    assert outputs(out_dir) == ["test.json", "test_images.npy", "test_labels.npy"]
