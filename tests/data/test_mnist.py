import hashlib

import numpy as np
import pytest
import torch

from stn.data import get_dataset, mnist
from stn.data.mnist import EMBEDDED_CACHE, load_digits, load_embedded_mnist, prepared_dir
from stn.data.prepared import ArrayCache
from stn.data.split import stratified_split


def test_embedded_split_is_stratified_disjoint_and_seeded(digits):
    assert digits.train_images.shape == (4000, 28, 28) and digits.test_images.shape == (
        1000,
        28,
        28,
    )
    assert digits.train_images.dtype == torch.uint8
    assert torch.bincount(digits.test_labels).tolist() == [100] * 10
    assert torch.bincount(digits.train_labels).tolist() == [400] * 10
    again = load_digits("embedded")
    assert torch.equal(again.test_images, digits.test_images)
    other = load_digits("embedded", split_seed=1)
    assert not torch.equal(other.test_images, digits.test_images)


def test_stratified_split_covers_every_index_once():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    train, test = stratified_split(labels, 0.25, seed=3)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    assert np.bincount(labels[test]).tolist() == [2, 5, 8, 10]  # round(n * 0.25) per class


def test_unknown_source_and_bad_fraction():
    with pytest.raises(ValueError, match="unknown MNIST source 'kaggle'"):
        load_digits("kaggle")
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(np.zeros(10), 1.5, 0)


def test_torchvision_source_reads_an_offline_torchvision_folder(tmp_path, monkeypatch):
    """Uncompressed IDX files in torchvision's MNIST/raw, verified by content (table patched)."""
    from stn.data.download import RemoteFile
    from stn.data.mnist import files as mnist_files
    from tests.data.test_download import idx_bytes, random_mnist

    arrays = random_mnist(1, 6, 4)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for key, array in arrays.items():
        file = mnist_files.MNIST_FILES[key]
        data = idx_bytes(array)
        (raw / file.raw_name).write_bytes(data)
        monkeypatch.setitem(
            mnist_files.MNIST_FILES, key, RemoteFile(file.name, file.md5, hashlib.md5(data).hexdigest())
        )
    digits = load_digits("torchvision", tmp_path, mirrors=[])
    assert torch.equal(digits.train_images, torch.from_numpy(arrays["train_images"]))
    assert digits.test_labels.tolist() == arrays["test_labels"].tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MNIST"]  # nothing downloaded or copied


def _splits_equal(a, b) -> bool:
    fields = ("train_images", "train_labels", "test_images", "test_labels")
    return all(
        torch.equal(getattr(a, f), getattr(b, f)) and getattr(a, f).dtype == getattr(b, f).dtype
        for f in fields
    )


def _fresh_load(*args):
    load_embedded_mnist.cache_clear()  # the in-memory cache would hide the files
    return load_embedded_mnist(*args)


def test_embedded_digits_are_parsed_once_into_the_prepared_folder(digits, tmp_path, monkeypatch):
    """MNIST.load caches the parsed CSV in root/prepared; a later load reads the arrays, the same
    digits and split, without parsing."""
    data = {"source": "embedded", "root": str(tmp_path), "mirrors": [], "test_fraction": 0.2, "split_seed": 0}
    first = get_dataset("mnist").load(data)
    assert _splits_equal(first, digits)
    assert ArrayCache(prepared_dir(data), EMBEDDED_CACHE).read_manifest()["source"]["sha256"]

    def no_parse(path):
        raise AssertionError("parsed again despite the cache")

    other_split = load_digits("embedded", split_seed=1)
    monkeypatch.setattr(mnist, "_parse_embedded_csv", no_parse)
    assert _splits_equal(_fresh_load(0.2, 1, prepared_dir(data)), other_split)


def test_a_damaged_embedded_cache_is_parsed_again(digits, tmp_path):
    _fresh_load(0.2, 0, tmp_path)
    images = ArrayCache(tmp_path, EMBEDDED_CACHE).path("images")
    images.write_bytes(images.read_bytes()[:-100])
    assert _splits_equal(_fresh_load(0.2, 0, tmp_path), digits)
    assert ArrayCache(tmp_path, EMBEDDED_CACHE).fresh(lambda manifest: True) is not None


def test_an_unwritable_cache_folder_only_warns(digits, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    with pytest.warns(UserWarning, match="could not be cached"):
        assert _splits_equal(_fresh_load(0.2, 0, blocker / "prepared"), digits)
