"""Data sets by name: MNIST behind the interface, a new data set as one registered class, and the
self-check of every task with a pose (Task.check_undo)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stn.config import ConfigError, load_splits, resolve_run_config, resolve_task_section, task_spec
from stn.data import get_dataset
from stn.data.base import DATASETS, DataSet, Splits, UndoCheckFailed, register_dataset, relative_residual
from stn.data.mnist.files import MNIST_FILES
from stn.data.mnist.task import PAPER_TASKS, MNISTTask, make_test_set
from stn.evaluation import evaluate, prepare_test_set
from stn.io import load_torch
from stn.training import train
from tests.conftest import tiny_config


def test_mnist_tasks_and_test_sets_come_through_the_registry(tmp_path, digits):
    config = resolve_run_config(
        tiny_config(task={"name": "T", "canvas": 60, "translation": 16, "clutter": 6})
    )
    assert task_spec(config) == MNISTTask("T", canvas=60, translation=16, clutter=6)
    assert torch.equal(load_splits(config).test_images, digits.test_images)
    prepare_test_set(config, tmp_path / "test.pt")
    stored = load_torch(tmp_path / "test.pt")
    direct = make_test_set(
        digits.test_images, digits.test_labels, PAPER_TASKS["T"], config["task"]["test_seed"]
    )
    assert torch.equal(stored["images"], direct[0]) and torch.equal(stored["labels"], direct[1])


def test_mnist_raw_files_are_none_embedded_and_the_four_files_otherwise(tmp_path):
    mnist = get_dataset("mnist")
    assert mnist.raw_files({"source": "embedded", "root": str(tmp_path)}) == []
    targets = mnist.raw_files({"source": "torchvision", "root": str(tmp_path)})
    assert [p.name for p in targets] == [f.name for f in MNIST_FILES.values()]
    with pytest.raises(ValueError, match="not an MNIST raw file"):
        mnist.fetch({"mirrors": []}, tmp_path / "other.gz")


def test_an_unknown_data_set_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown data set 'nothing'"):
        resolve_run_config(tiny_config(data={"dataset": "nothing"}))


@pytest.fixture()
def toy_dataset():
    """A data set of random 'digits', registered for one test."""

    @register_dataset("toy")
    class Toy(DataSet):
        image_shape, label_values, backbone = (28, 28), 10, "mnist"

        def schema(self) -> dict:
            task = {"name": {"type": "string"}, "canvas": {"const": 28}, "rotation": {"type": "number"}}
            return {
                "data": {"properties": {"dataset": {"const": "toy"}}, "additionalProperties": False},
                "task": {"properties": task, "additionalProperties": False},
            }

        def train_size(self, data: dict) -> int:
            return 64

        def raw_files(self, data: dict) -> list[Path]:
            return []

        def fetch(self, data: dict, target: Path) -> None:
            raise AssertionError("nothing to fetch")

        def load(self, data: dict) -> Splits:
            generator = torch.Generator().manual_seed(0)
            images = torch.randint(0, 256, (96, 28, 28), generator=generator, dtype=torch.uint8)
            labels = torch.randint(0, 10, (96,), generator=generator)
            return Splits(images[:64], labels[:64], images[64:], labels[64:])

        def task(self, settings: dict) -> MNISTTask:
            return MNISTTask(settings["name"], rotation=settings["rotation"])

    yield DATASETS["toy"]
    del DATASETS["toy"]


def test_a_registered_data_set_trains_and_evaluates_with_no_other_change(tmp_path, toy_dataset):
    config = tiny_config(data={"dataset": "toy"}, model={"network": "STN-C1-oracle", "backbone_args": {}})
    prepare_test_set(config, tmp_path / "test.pt")
    stats = train(config, tmp_path / "model.pt", progress=False)
    metrics = evaluate(tmp_path / "model.pt", tmp_path / "test.pt", device="cpu")
    assert stats["steps"] == 12 and metrics["test_size"] == 32 and 0 <= metrics["test_error"] <= 100


def padded(digits: torch.Tensor, size: int) -> torch.Tensor:
    """Digits (B, 28, 28) centred on a zero square of side ``size``."""
    margin = (size - 28) // 2
    return torch.nn.functional.pad(digits, (margin, size - 28 - margin) * 2)


UNDO_CASES = [  # (data set, task section, images' side, tolerance)
    ("mnist", {"name": "R", "rotation": 90}, 28, 0.25),
    ("mnist", {"name": "S", "canvas": 112, "log2_scale": [-1, 2]}, 28, 0.25),
    ("mnist", {"name": "T", "canvas": 60, "translation": 16}, 28, 1e-5),  # whole pixels: exact
    ("mnist", {"name": "RT", "canvas": 37, "rotation": 30, "translation": 4}, 28, 0.25),  # odd canvas
    (
        "plankton",
        {"canvas": 64, "rotation": 180, "log2_scale": [-0.3785, 0.3785], "translation": 4},
        64,
        0.25,
    ),
    ("plankton", {"canvas": 64, "shear": 20, "flip": 0.5}, 64, 0.25),
    ("plankton", {"canvas": 48, "rotation": 180}, 64, 0.25),  # warped at 64, then resized to the canvas
]


@pytest.mark.parametrize(("dataset", "section", "side", "tolerance"), UNDO_CASES)
def test_every_task_with_a_pose_undoes_its_augmentation(digits, dataset, section, side, tolerance):
    """The self-check on the task (Task.check_undo): the oracle's warp returns each rendered
    image to the canonical one; rotations and scalings leave interpolation blur only."""
    task = get_dataset(dataset).task(resolve_task_section(dataset, section))
    images = padded(digits.test_images[:64], side)
    assert task.check_undo(images, tolerance, torch.Generator().manual_seed(0)) <= tolerance
    rendered, _ = task.render(images, task.draw(64, torch.Generator().manual_seed(0)))
    assert relative_residual(rendered, task.canonical(images)) > 2 * tolerance  # the task moved them


def test_the_undo_check_fails_a_wrong_undo(digits):
    class Forgetful(MNISTTask):
        def undo(self, params):  # the identity: forgets the rotation
            return super().undo({**params, "angle": torch.zeros_like(params["angle"])})

    with pytest.raises(UndoCheckFailed, match="task 'R': undoing the augmentation leaves"):
        Forgetful("R", rotation=90).check_undo(
            digits.test_images[:64], 0.25, torch.Generator().manual_seed(0)
        )


def test_a_task_without_a_pose_says_so():
    task = get_dataset("svhn").task(resolve_task_section("svhn", {}))
    with pytest.raises(NotImplementedError, match="task 'SVHN' has no pose"):
        task.check_undo(torch.zeros(2, 64, 64, 3, dtype=torch.uint8), 0.25)
