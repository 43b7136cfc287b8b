import hashlib

import numpy as np
import pytest
import torch

from stn.data.mnist import load_digits
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
