"""SVHN format 1 on a generated miniature: digitStruct.mat parsing, Goodfellow crops, labels, errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from stn.data import svhn
from stn.data.svhn import (
    SVHN_FILES,
    DigitStruct,
    SVHNFormatError,
    all_sequence_labels,
    crop,
    crop_and_resize,
    crop_box,
    length_filter,
    load_png,
    read_digit_struct,
    sequence_labels,
    write_digit_struct,
)

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
    assert SVHN_FILES["extra"].url == "http://ufldl.stanford.edu/housenumbers/extra.tar.gz"
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
        monkeypatch.setattr(svhn._RawObjects, "box_row", lambda self, a: None)
        monkeypatch.setattr(svhn._RawObjects, "text", lambda self, a: None)
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
    assert sequence_labels([1, 10, 3]).tolist() == [1, 0, 3, 10, 10]
    assert sequence_labels([0]).tolist() == [0, 10, 10, 10, 10]
    with pytest.raises(ValueError, match="6 digits"):
        sequence_labels([1, 2, 3, 4, 5, 6])
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
    for i in np.flatnonzero(keep):
        assert labels[i].tolist() == sequence_labels(ds.labels(i)).tolist()
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
    bad = tmp_path / "7.png"
    bad.write_bytes((split / "1.png").read_bytes()[:60])  # truncated
    with pytest.raises(SVHNFormatError, match=r"7\.png: the image does not decode"):
        load_png(bad)
    with pytest.raises(SVHNFormatError, match=r"8\.png"):
        load_png(tmp_path / "8.png")  # missing


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
