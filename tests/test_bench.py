"""Quick checks of the throughput benchmark (stn.bench)."""

from __future__ import annotations

import pytest
import torch

from stn.bench import PerSampleDataset, main, run_benchmark
from stn.data.augment import PAPER_TASKS
from stn.data.mnist import Digits, load_digits


@pytest.fixture(scope="module")
def digits() -> Digits:
    return load_digits("embedded")


def test_run_benchmark_tiny() -> None:
    results = run_benchmark(
        tasks=["R"], batch_size=32, seconds=0.3, workers=1, networks=["CNN"], device="cpu"
    )
    aug = results["augmentation"]["R"]
    assert aug["ours"] > 0 and aug["per_sample"] > 0
    assert aug["ratio"] == pytest.approx(aug["ours"] / aug["per_sample"])
    step = results["steps"]["R"]["CNN"]
    assert step["steps_per_s"] > 0
    assert step["images_per_s"] == pytest.approx(32 * step["steps_per_s"])


@pytest.mark.parametrize("name", sorted(PAPER_TASKS))
def test_per_sample_dataset_images(name: str, digits: Digits) -> None:
    task = PAPER_TASKS[name]
    dataset = PerSampleDataset(digits.train_images.numpy(), digits.train_labels.numpy(), task)
    assert len(dataset) == len(digits.train_images)
    for index in range(4):
        image, label = dataset[index]
        assert image.shape == (1, task.canvas, task.canvas)
        assert image.dtype == torch.float32
        assert image.min() >= 0.0 and image.max() <= 1.0 and image.max() > 0
        assert label == int(digits.train_labels[index])


def test_main_prints_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--tasks", "T", "--batch-size", "16", "--seconds", "0.1", "--workers", "0"]
    assert main([*argv, "--device", "cpu", "--skip-steps"]) == 0
    out = capsys.readouterr().out
    assert "per-sample img/s" in out and "\nT " in out and "steps/s" not in out
