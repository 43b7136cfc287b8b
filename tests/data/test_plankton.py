"""PlanktonSet 1.0 on a generated miniature (3 classes of JPEGs of various sizes), as the NCEI
tarball, Kaggle's train.zip and a class-folder tree: preprocessing, preparation into cached arrays,
the split, the download over local HTTP, bad input, the augmentation and the registry."""

from __future__ import annotations

import csv
import io
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from stn.config import ConfigError, resolve_run_config, resolve_task_section, task_spec
from stn.data import get_dataset
from stn.data.download import DownloadError
from stn.data.plankton import Plankton, sources
from stn.data.plankton import prepare as plankton_prepare
from stn.data.plankton.prepare import load_plankton, plankton_cache, prepare_plankton, preprocess, split_path
from stn.data.plankton.sources import PLANKTON_URL, TARBALL, PlanktonFormatError, plankton_mirrors
from stn.data.plankton.task import PlanktonTask
from stn.data.prepared import decode_image
from stn.evaluation import analyse_rotations, evaluate, load_test_set, prepare_test_set
from stn.geometry import identity, rotation_angle
from stn.io import sha256sum
from stn.training import train
from tests.conftest import TINY_DEEP_TRAIN, tiny_config
from tests.file_modes import UMASKS, modes, open_modes, umask
from tests.local_http import serve

# (height, width) of each image per class; the names sort in this order within a class
SIZES = {
    "copepod": [(7, 13), (30, 12), (95, 95), (140, 60)],
    "acantharia": [(13, 7), (40, 40), (12, 30), (60, 140), (5, 5)],
    "diatom": [(20, 10), (33, 17), (64, 64), (8, 50), (50, 8), (100, 3)],
}
SUFFIXES = [".jpg", ".JPG", ".jpeg"]
SIZE = 32  # the prepared side in these tests (95 in the paper's config)
COUNT = sum(map(len, SIZES.values()))


def jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@dataclass
class Mini:
    """The images (``class/name`` -> JPEG bytes) and the arrays they prepare to."""

    members: dict[str, bytes]
    images: np.ndarray  # uint8 (N, SIZE, SIZE), ordered by class, then name
    labels: np.ndarray
    paths: list[str]


@pytest.fixture(scope="module")
def mini() -> Mini:
    rng = np.random.default_rng(0)
    members = {}
    for label, sizes in SIZES.items():
        for i, (h, w) in enumerate(sizes):
            y, x = np.mgrid[:h, :w]
            smooth = 128 + 100 * np.sin(x / 3 + len(label)) * np.cos(y / 4)
            noise = rng.integers(-20, 20, (h, w))
            pixels = np.clip(smooth + noise, 0, 255).astype(np.uint8)
            members[f"{label}/img{i}{SUFFIXES[i % 3]}"] = jpeg(pixels)
    paths = sorted(members, key=lambda p: (p.split("/")[0], p))
    classes = sorted(SIZES)
    images = np.stack([preprocess(decode_image(members[p], "L"), SIZE) for p in paths])
    labels = np.array([classes.index(p.split("/")[0]) for p in paths])
    return Mini(members, images, labels, paths)


def pack_tar(members: dict[str, bytes], prefix: str = "PlanktonSet/2.3/train/") -> bytes:
    """A .tar.gz of ``members`` under ``prefix``, with other files, a link and a member escaping
    upwards (all ignored)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        extra = {"PlanktonSet/README.txt": b"readme", f"{prefix}copepod/notes.csv": b"a,b\n"}
        extra["../escape.jpg"] = next(iter(members.values()))
        for name, data in {**{prefix + k: v for k, v in members.items()}, **extra}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(f"{prefix}copepod/zz-link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    return buf.getvalue()


def pack_zip(members: dict[str, bytes], prefix: str = "train/") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("train/", b"")
        for name, data in members.items():
            archive.writestr(prefix + name, data)
        archive.writestr("sampleSubmission.csv", b"image,x\n")
    return buf.getvalue()


def place(root: Path, kind: str, members: dict[str, bytes]) -> Path:
    """Place ``members`` in ``root`` as the source ``kind``; return its path."""
    root.mkdir(parents=True, exist_ok=True)
    if kind == "tarball":
        (root / TARBALL).write_bytes(pack_tar(members))
        return root / TARBALL
    if kind == "zip":
        (root / "train.zip").write_bytes(pack_zip(members))
        return root / "train.zip"
    for name, data in members.items():
        (root / "classes" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "classes" / name).write_bytes(data)
    (root / "classes" / "README.txt").write_text("not an image")
    return root / "classes"


def data_for(root: Path, **changes) -> dict:
    """A resolved ``data`` section for the miniature."""
    data = {
        "dataset": "plankton",
        "root": str(root),
        "mirrors": [],
        "images": None,
        "classes": 3,
        "image_size": SIZE,
        "test_fraction": 0.25,
        "split_seed": 0,
    }
    return data | changes


def read_manifest(root: Path) -> dict | None:
    """The manifest of the miniature prepared in ``root``."""
    return plankton_cache(data_for(root)).read_manifest()


def outputs(out_dir: Path) -> list[str]:
    return sorted(p.name for p in out_dir.iterdir()) if out_dir.exists() else []


# ---------------------------------------------------------------------------------------------
# Preprocessing


def test_preprocess_by_hand():
    wide = np.full((10, 20), 55, np.uint8)  # 10 rows, 20 columns -> 5 x 10, rows 2..6
    out = preprocess(wide, 10)
    assert out.shape == (10, 10) and out.dtype == np.uint8
    assert (out[2:7] == 200).all() and not out[:2].any() and not out[7:].any()
    tall = preprocess(wide.T.copy(), 10)  # columns 2..6
    assert (tall[:, 2:7] == 200).all() and not tall[:, :2].any() and not tall[:, 7:].any()
    # the same size: only inverted
    image = np.arange(100, dtype=np.uint8).reshape(10, 10)
    np.testing.assert_array_equal(preprocess(image, 10), 255 - image)
    # a uniform white image is an all-black square, whatever its shape
    assert not preprocess(np.full((30, 12), 255, np.uint8), 95).any()
    # a small image is enlarged: 2 x 3 at 9 -> 6 x 9 at rows 1..6
    small = preprocess(np.full((2, 3), 5, np.uint8), 9)
    assert (small[1:7] == 250).all() and not small[0].any() and not small[7:].any()
    # an odd margin puts the extra row below: 3 x 1 at 4 -> 4 x 1 (round(4/3) = 1) at column 1
    assert preprocess(np.zeros((3, 1), np.uint8), 4)[:, 1].tolist() == [255] * 4
    # antialiased when shrinking: a one-pixel stripe pattern becomes mid-grey
    stripes = np.tile(np.array([0, 255], np.uint8), (40, 20))
    assert abs(int(preprocess(stripes, 10)[5, 5]) - 128) < 20
    with pytest.raises(ValueError, match=r"uint8 \(H, W\)"):
        preprocess(np.zeros((4, 4, 3), np.uint8), 4)


# ---------------------------------------------------------------------------------------------
# Sources and preparation


@pytest.mark.parametrize("kind", ["tarball", "zip", "tree"])
def test_each_source_prepares_the_same_arrays(tmp_path, mini, kind):
    root = tmp_path / "raw"
    source = place(root, kind, mini.members)
    assert Plankton().raw_files(data_for(root)) == [source]
    splits = load_plankton(data_for(root, images=COUNT), progress=False)
    out_dir = root / "prepared"
    images = np.load(out_dir / "plankton_images.npy")
    labels = np.load(out_dir / "plankton_labels.npy")
    np.testing.assert_array_equal(images, mini.images)
    np.testing.assert_array_equal(labels, mini.labels)
    manifest = read_manifest(root)
    assert manifest["source"] == {"kind": kind, "path": source.name, "sha256": sha256sum(source)}
    assert manifest["classes"] == ["acantharia", "copepod", "diatom"]
    assert manifest["counts"] == {"acantharia": 5, "copepod": 4, "diatom": 6}
    assert (manifest["files"], manifest["skipped"], manifest["image_size"]) == (COUNT, [], SIZE)
    assert manifest["images"]["shape"] == [COUNT, SIZE, SIZE] and manifest["labels"]["shape"] == [COUNT]
    assert [p.split("/")[-2:] for p in manifest["paths"]] == [p.split("/") for p in mini.paths]
    # the split selects rows: together they are the arrays
    assert len(splits.train_images) + len(splits.test_images) == COUNT
    assert splits.train_images.dtype == torch.uint8 and splits.train_labels.dtype == torch.int64
    assert splits.train_images.shape[1:] == (SIZE, SIZE)
    merged = torch.cat([splits.train_images, splits.test_images]).flatten(1)
    assert sorted(map(bytes, merged.numpy())) == sorted(map(bytes, mini.images.reshape(COUNT, -1)))
    assert not list(tmp_path.rglob("escape.jpg"))  # nothing extracted
    assert outputs(out_dir) == sorted(
        ["plankton.json", "plankton_images.npy", "plankton_labels.npy", "split-seed0-test0.25.csv"]
    )


@pytest.mark.parametrize("mask", UMASKS)
def test_prepared_files_get_the_mode_open_gives_under_the_umask(tmp_path, mini, mask):
    place(tmp_path, "tree", mini.members)
    with umask(mask):
        load_plankton(data_for(tmp_path), progress=False)
    written = list((tmp_path / "prepared").iterdir())
    assert len(written) == 4 and modes(written) == open_modes(written, mask)  # arrays, manifest, split


def test_sources_are_taken_in_order(tmp_path, mini):
    dataset = Plankton()
    assert dataset.raw_files(data_for(tmp_path)) == [tmp_path / TARBALL]  # the download target
    (tmp_path / "classes").write_text("a file, not the tree")
    assert dataset.raw_files(data_for(tmp_path)) == [tmp_path / TARBALL]
    (tmp_path / "classes").unlink()
    for kind, name in [("tree", "classes"), ("zip", "train.zip"), ("tarball", TARBALL)]:
        place(tmp_path, kind, mini.members)
        assert dataset.raw_files(data_for(tmp_path)) == [tmp_path / name]


def test_the_cache_is_reused_without_decoding_and_redone_when_the_source_changes(tmp_path, mini, monkeypatch):
    place(tmp_path, "tree", mini.members)
    data = data_for(tmp_path)
    first = prepare_plankton(data, progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "prepared").iterdir()}

    def fails(blob: bytes, mode: str) -> np.ndarray:
        raise AssertionError("decoded")

    monkeypatch.setattr(plankton_prepare, "decode_image", fails)
    assert prepare_plankton(data, progress=False) == first
    assert Plankton().load(data).train_images.shape[1:] == (SIZE, SIZE)
    assert {name: (tmp_path / "prepared" / name).stat().st_mtime_ns for name in stamps} == stamps
    monkeypatch.undo()

    decoded = []

    def counts(blob: bytes, mode: str) -> np.ndarray:
        decoded.append(1)
        return decode_image(blob, mode)

    monkeypatch.setattr(plankton_prepare, "decode_image", counts)
    (tmp_path / "classes" / "diatom" / "img9.jpg").write_bytes(mini.members["diatom/img0.jpg"])
    again = prepare_plankton(data, progress=False)
    assert len(decoded) == COUNT + 1 and again["counts"]["diatom"] == 7
    assert again["source"]["sha256"] != first["source"]["sha256"]
    prepare_plankton(data_for(tmp_path, image_size=16), progress=False)  # another size: redone
    assert len(decoded) == 2 * COUNT + 2
    assert np.load(tmp_path / "prepared" / "plankton_images.npy").shape == (COUNT + 1, 16, 16)


def test_the_split_is_stratified_seeded_written_and_reused(tmp_path, mini):
    place(tmp_path, "zip", mini.members)
    data = data_for(tmp_path, test_fraction=0.4, split_seed=3)
    splits = load_plankton(data, progress=False)
    path = split_path(data)
    assert path == tmp_path / "prepared" / "split-seed3-test0.4.csv"
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["path", "class", "subset"]
    rows = table[1:]
    assert [r[0] for r in rows] == read_manifest(tmp_path)["paths"]
    assert [r[1] for r in rows] == [p.split("/")[0] for p in mini.paths]
    tests = {c: sum(r[2] == "test" for r in rows if r[1] == c) for c in SIZES}
    assert tests == {c: round(len(s) * 0.4) for c, s in SIZES.items()}  # stratified
    test = np.array([r[2] == "test" for r in rows])
    np.testing.assert_array_equal(splits.test_images.numpy(), mini.images[test])
    np.testing.assert_array_equal(splits.train_labels.numpy(), mini.labels[~test])
    assert Plankton().train_size(data) == len(splits.train_images) == COUNT - sum(tests.values())
    # seeded: drawn again, the same; another seed, another file
    path.unlink()
    load_plankton(data, progress=False)
    with open(path, newline="") as f:
        assert list(csv.reader(f)) == table
    load_plankton(data_for(tmp_path, test_fraction=0.4, split_seed=4), progress=False)
    assert (tmp_path / "prepared" / "split-seed4-test0.4.csv").exists()
    # reused as written: a hand edit is followed
    rows[0][2], rows[1][2] = rows[1][2], rows[0][2]
    edited = [table[0], *rows]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(edited)
    assert torch.equal(
        load_plankton(data, progress=False).test_labels,
        torch.from_numpy(mini.labels[[r[2] == "test" for r in rows]]),
    )
    # a split of other images is rewritten
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(edited[:-1])
    load_plankton(data, progress=False)
    with open(path, newline="") as f:
        assert list(csv.reader(f)) == table


# ---------------------------------------------------------------------------------------------
# Download


@pytest.fixture
def server(mini) -> Iterator[str]:
    """``/good/`` serves the tarball (without Content-Length, as NCEI); ``/busy/`` answers 503."""
    blob = pack_tar(mini.members)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == f"/good/{TARBALL}":
                self.send_response(200)
                self.end_headers()
                self.wfile.write(blob)
            else:
                self.send_error(503 if self.path.startswith("/busy/") else 404)

        def log_message(self, *args) -> None:
            pass

    with serve(Handler) as base:
        yield base


def test_the_tarball_is_downloaded_then_loaded(tmp_path, mini, server):
    data = data_for(tmp_path, mirrors=[server + "/good/"])
    Plankton().fetch(data, tmp_path / TARBALL)
    assert (tmp_path / TARBALL).read_bytes() == pack_tar(mini.members)
    load_plankton(data, progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "prepared" / "plankton_images.npy"), mini.images)
    # load downloads by itself where nothing is present
    other = tmp_path / "other"
    load_plankton(data_for(other, mirrors=[server + "/good/"]), progress=False)
    assert read_manifest(other)["source"]["kind"] == "tarball"


def test_a_failed_download_says_how_to_place_the_data_by_hand(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setattr(sources, "DOWNLOAD_BACKOFF", 0.0)
    with pytest.raises(DownloadError) as info:
        Plankton().fetch(data_for(tmp_path, mirrors=[server + "/busy/"]), tmp_path / TARBALL)
    message = str(info.value)
    assert "HTTP 503" in message and "(5 tries)" in message
    for place_ in (tmp_path / TARBALL, tmp_path / "train.zip", tmp_path / "classes"):
        assert str(place_) in message
    assert "(4 of 5)" in capsys.readouterr().err
    with pytest.raises(DownloadError, match=r"(?s)no mirrors were given.*Place the data by hand"):
        load_plankton(data_for(tmp_path), progress=False)
    assert not (tmp_path / TARBALL).exists()


def test_fetch_knows_the_sources_and_the_default_mirrors(tmp_path, mini):
    dataset = Plankton()
    with pytest.raises(
        ValueError, match=rf"not a PlanktonSet source \(known: {TARBALL}, train.zip, classes\)"
    ):
        dataset.fetch(data_for(tmp_path), tmp_path / "test.zip")
    with pytest.raises(DownloadError, match=r"train\.zip is missing and cannot be downloaded"):
        dataset.fetch(data_for(tmp_path), tmp_path / "train.zip")
    place(tmp_path, "tree", mini.members)
    dataset.fetch(data_for(tmp_path), tmp_path / "classes")  # present: nothing to do
    assert plankton_mirrors({"mirrors": None}) == [PLANKTON_URL]  # the schema's default
    assert plankton_mirrors({"mirrors": []}) == []
    assert PLANKTON_URL.startswith("https://www.ncei.noaa.gov/")


# ---------------------------------------------------------------------------------------------
# Bad input


def test_a_truncated_tarball_names_the_file_and_leaves_no_manifest(tmp_path, mini):
    place(tmp_path, "zip", mini.members)
    prepare_plankton(data_for(tmp_path), progress=False)
    blob = pack_tar(mini.members)
    (tmp_path / TARBALL).write_bytes(blob[: len(blob) // 2])  # now the first source
    with pytest.raises(PlanktonFormatError, match="delete it and rerun to download it again") as info:
        load_plankton(data_for(tmp_path), progress=False)
    assert str(tmp_path / TARBALL) in str(info.value)
    assert read_manifest(tmp_path) is None
    assert not [n for n in outputs(tmp_path / "prepared") if n.startswith(".")]


def test_a_web_page_saved_as_the_tarball_is_named_as_such(tmp_path):
    (tmp_path / TARBALL).write_bytes(b"<!DOCTYPE html><html><body>Your order is being prepared</body></html>")
    with pytest.raises(PlanktonFormatError, match="sent a page or a message instead of the archive"):
        prepare_plankton(data_for(tmp_path), progress=False)
    assert read_manifest(tmp_path) is None


def test_an_unreadable_jpeg_is_skipped_and_counted(tmp_path, mini, capsys):
    members = dict(mini.members)
    members["copepod/broken.jpg"] = b"not a jpeg"
    members["diatom/cut.jpg"] = mini.members["diatom/img2.jpeg"][:100]
    place(tmp_path, "tree", members)
    manifest = prepare_plankton(data_for(tmp_path, images=COUNT + 2), progress=True)
    assert "warning: 2 PlanktonSet images" in capsys.readouterr().err
    assert manifest["files"] == COUNT + 2 and manifest["images"]["shape"][0] == COUNT
    assert [s["path"] for s in manifest["skipped"]] == ["copepod/broken.jpg", "diatom/cut.jpg"]
    assert all(s["reason"] for s in manifest["skipped"])
    np.testing.assert_array_equal(np.load(tmp_path / "prepared" / "plankton_images.npy"), mini.images)
    # a class left with no readable image is an error
    (tmp_path / "classes" / "empty").mkdir()
    (tmp_path / "classes" / "empty" / "x.jpg").write_bytes(b"nothing")
    with pytest.raises(PlanktonFormatError, match=r"no image of the classes \['empty'\] decodes"):
        prepare_plankton(data_for(tmp_path, classes=4), progress=False)


def test_wrong_counts_name_both_and_the_setting(tmp_path, mini):
    place(tmp_path, "tree", mini.members)
    for prepared in (False, True):  # checked both when preparing and on a valid cache
        with pytest.raises(
            PlanktonFormatError,
            match=r"3 class folders hold JPEG images \(acantharia, copepod, diatom\), expected 121; .*"
            r"set classes: 3",
        ):
            prepare_plankton(data_for(tmp_path, classes=121), progress=False)
        with pytest.raises(
            PlanktonFormatError, match=r"15 JPEG files, expected 60736; .*set images: 15"
        ) as info:
            prepare_plankton(data_for(tmp_path, images=60736), progress=False)
        assert str(tmp_path / "classes") in str(info.value) and "train.zip 30,336" in str(info.value)
        assert (read_manifest(tmp_path) is not None) == prepared
        prepare_plankton(data_for(tmp_path), progress=False)


# ---------------------------------------------------------------------------------------------
# The task

PAPER = {"canvas": 95, "rotation": 180, "translation": 10, "log2_scale": [-0.3785, 0.3785], "shear": 20}


def test_drawn_parameters_lie_in_their_ranges():
    task = Plankton().task({"name": "Plankton", **PAPER, "flip": 0.5})
    assert task == PlanktonTask("Plankton", 95, 180, (-0.3785, 0.3785), 10, 20, 0.5)
    draws = task.draw(20000, torch.Generator().manual_seed(0))
    assert sorted(draws) == ["angle", "flip", "scale", "shear", "tx", "ty"]
    assert all(d.shape == (20000,) and d.min() >= 0 and d.max() < 1 for d in draws.values())
    p = task.parameters(draws)
    assert p["angle"].abs().max() <= 180 and p["angle"].abs().max() > 170
    assert p["scale"].min() >= 2**-0.3785 and p["scale"].max() <= 2**0.3785
    assert p["shear"].abs().max() <= 20 and p["shear"].abs().max() > 19
    for key in ("tx", "ty"):
        assert p[key].abs().max() <= 10 * 2 / 95 and p[key].abs().max() > 9 * 2 / 95
    assert set(p["flip"].tolist()) == {0.0, 1.0} and abs(p["flip"].mean() - 0.5) < 0.02


def blobs(size: int, batch: int = 4) -> torch.Tensor:
    """Smooth, asymmetric uint8 images (two Gaussian blobs) that stay inside the canvas."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = size / 64
    image = torch.exp(-((x - 36 * c) ** 2 + (y - 28 * c) ** 2) / (2 * (5 * c) ** 2))
    image = image + 0.6 * torch.exp(-((x - 26 * c) ** 2 + (y - 38 * c) ** 2) / (2 * (3 * c) ** 2))
    return (image * 255).round().to(torch.uint8).expand(batch, size, size).clone()


def test_no_augmentation_renders_the_image_unchanged_and_flip_mirrors_it():
    images = torch.randint(0, 256, (3, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    x = images[:, None].float() / 255
    task = PlanktonTask(canvas=32)
    out, params = task.render(images, task.draw(3))
    assert out.shape == (3, 1, 32, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
    assert torch.allclose(task.undo(params), identity(3), atol=1e-6)
    flipped, params = PlanktonTask(canvas=32, flip=1.0).render(images, task.draw(3))
    assert params["flip"].tolist() == [1.0, 1.0, 1.0]
    torch.testing.assert_close(flipped, x.flip(-1), atol=1e-5, rtol=0)


def test_the_undo_warp_returns_the_canonical_image():
    task = PlanktonTask(
        canvas=64, rotation=180, translation=4, log2_scale=(-0.3785, 0.3785), shear=20, flip=0.5
    )
    images = blobs(64, 16)
    rendered, _ = task.render(images, task.draw(16, torch.Generator().manual_seed(2)))
    assert not torch.allclose(rendered, task.canonical(images), atol=0.05)  # it moved
    assert task.check_undo(images, 0.03, torch.Generator().manual_seed(2)) < 0.03  # smooth blobs: little blur
    # the pose follows MNIST's convention: the undo warp rotates by minus the drawn angle
    pure = PlanktonTask(canvas=64, rotation=90)
    p = pure.parameters(pure.draw(8, torch.Generator().manual_seed(3)))
    torch.testing.assert_close(rotation_angle(pure.undo(p)), -p["angle"], atol=1e-4, rtol=0)


def test_a_larger_stored_size_is_resized_to_the_canvas_and_draws_are_seeded():
    images = blobs(64, 2)
    task = PlanktonTask(canvas=32)
    out, _ = task.render(images, task.draw(2))
    assert out.shape == (2, 1, 32, 32)
    expected = F.interpolate(images[:, None] / 255, size=(32, 32), mode="bilinear", antialias=True)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    task = PlanktonTask(canvas=32, rotation=30, translation=3, shear=10, flip=0.5)
    a = task.render(images, task.draw(2, torch.Generator().manual_seed(5)))
    b = task.render(images, task.draw(2, torch.Generator().manual_seed(5)))
    assert torch.equal(a[0], b[0]) and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def test_the_test_set_is_unaugmented_with_neutral_poses():
    images, labels = blobs(64, 5), torch.arange(5, dtype=torch.uint8)
    task = PlanktonTask(canvas=32, rotation=180, flip=0.5)
    inputs, out_labels, params = task.test_set(images, labels, seed=7)
    assert inputs.shape == (5, 1, 32, 32) and inputs.dtype == torch.uint8
    assert out_labels.dtype == torch.int64 and out_labels.tolist() == list(range(5))
    resized = F.interpolate(images[:, None] / 255, size=(32, 32), mode="bilinear", antialias=True)
    assert torch.equal(inputs, (resized * 255).round().to(torch.uint8))
    assert {k: v.tolist() for k, v in params.items()} == {
        "angle": [0.0] * 5,
        "scale": [1.0] * 5,
        "shear": [0.0] * 5,
        "tx": [0.0] * 5,
        "ty": [0.0] * 5,
        "flip": [0.0] * 5,
    }
    assert torch.equal(task.undo(params), identity(5))
    same = PlanktonTask(canvas=64).test_set(images, labels, seed=0)[0]
    assert torch.equal(same, images[:, None]) and torch.equal(task.test_set(images, labels, 1)[0], inputs)


def test_task_settings_are_checked():
    assert resolve_task_section("plankton", {"name": "P"}) | {"name": "P"} == resolve_task_section(
        "plankton", {}
    ) | {"name": "P"}
    assert task_spec(
        {"data": {"dataset": "plankton"}, "task": resolve_task_section("plankton", {"name": "P"})}
    ) == (PlanktonTask("P"))
    for key, value in [("clutter", 3), ("random_crop", 32), ("test_repeats", 2)]:  # other data sets' keys
        with pytest.raises(ConfigError, match=rf"task: Additional properties are not allowed \('{key}'"):
            resolve_task_section("plankton", {"name": "P", key: value})
    with pytest.raises(ConfigError, match=r"task.shear: 90 is greater than the maximum of 60"):
        resolve_task_section("plankton", {"name": "P", "shear": 90})
    with pytest.raises(ConfigError, match=r"task.canvas: 4 is less than the minimum of 8"):
        resolve_task_section("plankton", {"name": "P", "canvas": 4})
    with pytest.raises(ConfigError, match="task 'P': log2_scale must be \\[lo, hi\\] with lo <= hi"):
        resolve_task_section("plankton", {"name": "P", "log2_scale": [1, 0]})


# ---------------------------------------------------------------------------------------------
# The registry


def test_the_registry_and_the_run_config(tmp_path):
    dataset = get_dataset("plankton")
    assert isinstance(dataset, Plankton) and dataset.name == "plankton"
    config = {
        "data": {"dataset": "plankton", "root": str(tmp_path)},
        "task": {"name": "Plankton", **PAPER, "flip": 0.5},
        "model": {"network": "STN-SL2", "backbone": "plankton"},
    }
    resolved = resolve_run_config(config)
    assert task_spec(resolved) == PlanktonTask("Plankton", 95, 180, (-0.3785, 0.3785), 10, 20, 0.5)
    assert dataset.train_size(resolved["data"]) == round(60736 * 0.8)
    assert dataset.train_size(resolved["data"] | {"images": 30336}) == round(30336 * 0.8)
    with pytest.raises(ConfigError, match=r"task: Additional properties are not allowed \('clutter'"):
        resolve_run_config(config | {"task": config["task"] | {"clutter": 3}})
    # a Plankton run config holds no other data set's key
    assert set(resolved["data"]) == {*dataset.schema()["data"]["properties"]}
    assert set(resolved["task"]) == {*dataset.schema()["task"]["properties"]}
    images, labels = dataset.random_images(6, torch.Generator().manual_seed(0))
    assert images.shape == (6, 95, 95) and images.dtype == torch.uint8
    assert labels.shape == (6,) and labels.min() >= 0 and labels.max() < 121
    # other data sets' run configs get no Plankton keys (their test-set keys stay as they were)
    mnist = resolve_run_config(tiny_config())
    assert not {"images", "classes", "image_size"} & set(mnist["data"])
    assert not {"shear", "flip"} & set(mnist["task"])


@pytest.mark.parametrize("network", ["STN-C0-oracle", "STN-SL2x2"])
def test_train_evaluate_and_analyse_rotations_end_to_end(tmp_path, mini, network):
    """A tiny network trained on the placed miniature under the paper's augmentation, evaluated,
    and its rotations analysed; the oracle reads the exact undo of every augmentation."""
    place(tmp_path / "plankton", "tree", mini.members)
    config = resolve_run_config(
        {
            "seed": 0,
            "device": "cpu",
            "data": data_for(tmp_path / "plankton"),
            "task": {"name": "Plankton", **PAPER, "canvas": SIZE, "translation": 3, "flip": 0.5},
            "model": {
                "network": network,
                "backbone": "plankton",
                "backbone_args": {"channels": [4] * 4, "pool_after": [2, 4], "hidden": [8], "num_classes": 3},
            },
            "train": dict(TINY_DEEP_TRAIN),
        }
    )
    stats = train(config, tmp_path / "model.pt", progress=False)
    assert stats["steps"] == 3 and np.isfinite(stats["final_loss"])
    test_path = prepare_test_set(config, tmp_path / "test.pt")
    metrics = evaluate(tmp_path / "model.pt", test_path, device="cpu")
    assert metrics["test_size"] == len(load_test_set(test_path, resolve_run_config(config))["labels"])
    assert 0 <= metrics["test_error"] <= 100 and metrics["rotation_undone"] is not None
    analysis = analyse_rotations(tmp_path / "model.pt", test_path, angles=17, images=3, device="cpu")
    assert analysis["images"] == 3 and len(analysis["predicted_mean"]) == 17
    if network.endswith("oracle"):  # the oracle compensates every rotation exactly
        assert metrics["rotation_undone"] == pytest.approx(1.0, abs=1e-3)
        assert analysis["spread"]["360"] == pytest.approx(0.0, abs=0.1)
