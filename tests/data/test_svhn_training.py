"""SVHN as a data set of the registry: the generated miniature format-1 archives placed by hand,
loaded memory-mapped, rendered by the task (with and without random crops), and a tiny network
trained and evaluated on them end to end."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import stn.data.svhn  # noqa: F401  (registers "svhn")
from stn.config import ConfigError, resolve_data_section, resolve_run_config, resolve_task_section
from stn.data import get_dataset
from stn.data.svhn.prepare import load_prepared
from stn.data.svhn.task import SVHNTask
from stn.evaluation import evaluate, load_test_set, prepare_test_set
from stn.training import network_from_config, train
from tests.conftest import TINY_DEEP_TRAIN, tiny_config
from tests.data.test_svhn import HAND_LABELS, SPLITS, archive_record, pack, split_members

TINY_SVHN = {"channels": [4] * 8, "hidden": [8]}


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> tuple[dict[str, bytes], dict[str, dict]]:
    """The three generated archives (name -> bytes) and their records for ``data.archives``."""
    work = tmp_path_factory.mktemp("svhn-mini")
    blobs, records = {}, {}
    for seed, split in enumerate(SPLITS):
        blob = pack(split_members(split, work, seed))
        record = archive_record(split, blob)
        blobs[record.name] = blob
        records[split] = {"size": record.size, "sha256": record.sha256, "images": record.images}
    return blobs, records


def data_section(root: Path, records: dict[str, dict], splits=("train", "extra", "test")) -> dict:
    return {"dataset": "svhn", "root": str(root), "mirrors": [], "splits": list(splits), "archives": records}


@pytest.fixture()
def placed(tmp_path, archives) -> dict:
    """A data section whose archives are placed by hand in its root (no network)."""
    blobs, records = archives
    root = tmp_path / "svhn"
    root.mkdir()
    for name, blob in blobs.items():
        (root / name).write_bytes(blob)
    return data_section(root, records)


def svhn_config(data: dict, network: str = "STN-C0", **task) -> dict:
    return {
        "seed": 0,
        "device": "cpu",
        "data": data,
        "task": {"name": "SVHN", "canvas": task.get("random_crop") or 64, **task},
        "model": {"network": network, "backbone": "svhn", "backbone_args": dict(TINY_SVHN)},
        "train": dict(TINY_DEEP_TRAIN),
    }


def mapped_file(tensor: torch.Tensor) -> str | None:
    """The file whose memory map holds ``tensor``'s data, if any (Linux)."""
    address = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            return fields[5] if len(fields) == 6 else None
    return None


def test_raw_files_and_fetch_of_placed_archives(placed, tmp_path):
    svhn = get_dataset("svhn")
    root = Path(placed["root"])
    assert svhn.raw_files(placed) == [root / "train.tar.gz", root / "extra.tar.gz", root / "test.tar.gz"]
    assert svhn.raw_files({**placed, "splits": ["test", "train"]}) == [
        root / "train.tar.gz",
        root / "test.tar.gz",
    ]
    for path in svhn.raw_files(placed):  # placed by hand: verified, no network (mirrors [])
        svhn.fetch(placed, path)
    with pytest.raises(ValueError, match="not an SVHN archive"):
        svhn.fetch(placed, root / "valid.tar.gz")
    (root / "extra.tar.gz").unlink()
    with pytest.raises(Exception, match=r"extra\.tar\.gz"):
        svhn.fetch(placed, root / "extra.tar.gz")
    with pytest.raises(ValueError, match="needs the splits train and test"):
        svhn.raw_files({**placed, "splits": ["extra", "test"]})
    # the published records by default, and SVHN's own mirror for the schema's default (null)
    assert svhn.files({})["extra"].size == 1955489752
    assert svhn.mirrors(resolve_data_section({"dataset": "svhn"})) is None
    assert svhn.mirrors({"mirrors": ["http://127.0.0.1:1/"]}) == ["http://127.0.0.1:1/"]


def test_load_is_memory_mapped_uint8_with_int64_labels(placed):
    svhn = get_dataset("svhn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-writable array" warning from torch.from_numpy
        splits = svhn.load(placed)
    assert splits.train_images.shape == (6, 64, 64, 3) and splits.train_images.dtype == torch.uint8
    assert splits.test_images.shape == (3, 64, 64, 3) and splits.test_images.dtype == torch.uint8
    assert splits.train_labels.dtype == splits.test_labels.dtype == torch.int64
    assert splits.train_labels.tolist() == HAND_LABELS["train"] + HAND_LABELS["extra"]
    assert splits.test_labels.tolist() == HAND_LABELS["test"]
    prepared = Path(placed["root"]) / "prepared"
    train_x, _ = load_prepared(prepared, "train")
    np.testing.assert_array_equal(splits.train_images.numpy(), train_x)
    # not copied: the tensors lie on maps of the cached files
    assert mapped_file(splits.train_images) == str(prepared / "train_images.npy")
    assert mapped_file(splits.test_images) == str(prepared / "test_images.npy")
    # copy on write: writing to a tensor never reaches the cache
    splits.train_images[0] = 0
    assert load_prepared(prepared, "train")[0][0].any()


def test_load_without_extra(placed):
    splits = get_dataset("svhn").load({**placed, "splits": ["train", "test"]})
    assert splits.train_images.shape == (4, 64, 64, 3)
    assert splits.train_labels.tolist() == HAND_LABELS["train"]


def test_render_and_test_set_without_crop(placed):
    splits = get_dataset("svhn").load(placed)
    task = get_dataset("svhn").task({"name": "SVHN", "canvas": 64})
    assert task == SVHNTask("SVHN") and task.rotation == 0 and task.canvas == 64
    draws = task.draw(4, torch.Generator().manual_seed(0))
    assert draws == {}
    inputs, params = task.render(splits.train_images[:4], draws)
    assert inputs.shape == (4, 3, 64, 64) and inputs.dtype == torch.float32 and params == {}
    assert inputs.min() >= 0 and inputs.max() <= 1
    torch.testing.assert_close(inputs, splits.train_images[:4].permute(0, 3, 1, 2).float() / 255)
    images, labels, params = task.test_set(splits.test_images, splits.test_labels, seed=1)
    assert images.shape == (3, 3, 64, 64) and images.dtype == torch.uint8 and images.is_contiguous()
    assert torch.equal(images, splits.test_images.permute(0, 3, 1, 2))
    assert labels.tolist() == HAND_LABELS["test"] and params == {}
    assert task.undo(params) is None  # no pose


def test_random_crop_draws_windows_over_the_whole_image(placed):
    splits = get_dataset("svhn").load(placed)
    task = get_dataset("svhn").task({"name": "SVHN-crop", "canvas": 48, "random_crop": 48})
    assert task.canvas == 48
    draws = task.draw(2000, torch.Generator().manual_seed(0))
    offset = draws["offset"]
    assert offset.shape == (2000, 2) and offset.min() == 0 and offset.max() == 64 - 48
    batch = splits.train_images[torch.arange(6).repeat(2)]
    draws = task.draw(12, torch.Generator().manual_seed(1))
    inputs, params = task.render(batch, draws)
    assert inputs.shape == (12, 3, 48, 48) and inputs.min() >= 0 and inputs.max() <= 1
    for i, (row, col) in enumerate(params["offset"].tolist()):
        window = batch[i, row : row + 48, col : col + 48].permute(2, 0, 1).float() / 255
        torch.testing.assert_close(inputs[i], window)
    images, _, _ = task.test_set(splits.test_images, splits.test_labels, seed=0)
    assert images.shape == (3, 3, 48, 48)
    assert torch.equal(images, splits.test_images[:, 8:56, 8:56].permute(0, 3, 1, 2))


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"canvas": 28}, "canvas .* must be 64"),
        ({"canvas": 64, "random_crop": 54}, "must be 54"),
        ({"canvas": 64, "random_crop": 0}, "task.random_crop: 0 is less than the minimum of 1"),
        ({"canvas": 65, "random_crop": 65}, "task.random_crop: 65 is greater than the maximum of 64"),
        ({"canvas": 64, "rotation": 90}, r"Additional properties are not allowed \('rotation'"),  # MNIST's
        ({"canvas": 64, "log2_scale": [0, 1]}, r"Additional properties are not allowed \('log2_scale'"),
    ],
)
def test_bad_task_settings(settings, match):
    with pytest.raises(ConfigError, match=match):
        resolve_task_section("svhn", {"name": "SVHN", **settings})


def test_run_configs(placed):
    config = resolve_run_config(svhn_config(placed))
    assert config["data"]["splits"] == ["train", "extra", "test"] and config["task"]["random_crop"] is None
    assert not {"source", "test_fraction"} & set(config["data"])  # no MNIST key
    assert not {"rotation", "clutter", "test_seed"} & set(config["task"])
    bad = svhn_config(placed)
    bad["task"]["canvas"] = 28
    with pytest.raises(ConfigError, match="canvas is the network's input side and must be 64"):
        resolve_run_config(bad)
    bad["task"].pop("canvas")  # the task's own: 64
    assert network_from_config(resolve_run_config(bad)).backbone_spec.input_shape == (3, 64, 64)
    with pytest.raises(ConfigError, match=r"data\.splits"):
        resolve_run_config(svhn_config({**placed, "splits": ["valid"]}))
    # MNIST configs get no SVHN keys (their test-set keys stay as they were)
    mnist = resolve_run_config(tiny_config())
    assert not {"splits", "archives"} & set(mnist["data"]) and "random_crop" not in mnist["task"]


@pytest.mark.parametrize(("network", "crop"), [("STN-C0", None), ("CNN", 48)])
def test_train_and_evaluate_end_to_end(placed, tmp_path, network, crop):
    task = {} if crop is None else {"random_crop": crop}
    config = resolve_run_config(svhn_config({**placed, "splits": ["train", "test"]}, network, **task))
    stats = train(config, tmp_path / "model.pt", progress=False)
    assert stats["steps"] == 3 and np.isfinite(stats["final_loss"])
    test_path = prepare_test_set(config, tmp_path / "test.pt")
    test = load_test_set(test_path, resolve_run_config(config))
    side = crop or 64
    assert test["images"].shape == (3, 3, side, side) and test["poses"] is None
    metrics = evaluate(tmp_path / "model.pt", test_path, tmp_path / "metrics.json", device="cpu")
    assert metrics["test_size"] == 3 and 0 <= metrics["test_error"] <= 100
    assert metrics["task"] == "SVHN" and metrics["rotation_undone"] is None
    assert (tmp_path / "metrics.json").exists()
