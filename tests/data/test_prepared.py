"""The shared cache of prepared arrays and the image decoding of stn.data.prepared."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from stn.data.prepared import MANIFEST_VERSION, ArrayCache, UndecodableImage, decode_image


def write(cache: ArrayCache, fields: dict) -> dict:
    with cache.rebuild() as work:
        np.save(work / cache.file("images"), np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
        np.save(work / cache.file("labels"), np.array([1, 0], np.uint8))
        return cache.commit(work, fields)


def test_commit_records_the_arrays_and_fresh_reuses_only_a_matching_cache(tmp_path):
    cache = ArrayCache(tmp_path / "out", "set")
    manifest = write(cache, {"source": "a"})
    assert sorted(p.name for p in cache.out_dir.iterdir()) == ["set.json", "set_images.npy", "set_labels.npy"]
    assert manifest == json.loads(cache.manifest_path.read_text()) == cache.read_manifest()
    assert list(manifest) == ["version", "source", "images", "labels"]
    assert manifest["version"] == MANIFEST_VERSION
    entry = {"file": "set_images.npy", "shape": [2, 3, 4], "dtype": "uint8"}
    assert manifest["images"] == {**entry, "bytes": cache.path("images").stat().st_size}
    assert cache.fresh(lambda m: m["source"] == "a") == manifest
    assert cache.fresh(lambda m: m["source"] == "b") is None
    assert cache.fresh(lambda m: m["missing"]) is None  # a manifest without the key: stale
    np.save(cache.path("labels"), np.array([1, 0, 2], np.uint8))  # an array not as described
    assert cache.fresh(lambda m: True) is None
    manifest = write(cache, {"source": "a"})
    assert cache.fresh(lambda m: True) == manifest
    cache.manifest_path.write_text(json.dumps({**manifest, "version": MANIFEST_VERSION + 1}))
    assert cache.fresh(lambda m: True) is None  # another layout


def test_rebuild_deletes_the_old_manifest_first_and_leaves_no_work_folder(tmp_path):
    cache = ArrayCache(tmp_path, "set")
    write(cache, {})
    with pytest.raises(KeyboardInterrupt), cache.rebuild():
        assert cache.read_manifest() is None
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set_images.npy", "set_labels.npy"]


def test_decode_image_converts_to_the_mode_and_names_why_it_fails():
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 5), 7, np.uint8)).save(buf, format="PNG")
    rgb = decode_image(buf.getvalue(), "RGB")
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8 and (rgb == 7).all()
    assert decode_image(buf.getvalue(), "L").shape == (4, 5)
    with pytest.raises(UndecodableImage, match=r"^OSError: .*truncated"):
        decode_image(buf.getvalue()[:-20], "L")
    with pytest.raises(UndecodableImage, match=r"^UnidentifiedImageError: "):
        decode_image(b"not an image", "L")
