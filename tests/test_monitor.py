"""The training log: device-side sums read as rows, divergence, resume, TensorBoard."""

from __future__ import annotations

import math

import pytest
import torch

from stn.evaluation import evaluate, prepare_test_set
from stn.geometry import identity
from stn.invariance import transformation
from stn.io import load_torch
from stn.monitor import TrainingMonitor, log_interval
from stn.networks import build_network
from stn.train_log import TIMING_COLUMNS, log_path, read_log
from stn.training import TrainingDiverged, state_path, train
from tests.conftest import TINY_BACKBONE, tiny_config

STEPS = {"batch_size": 32, "epochs": None, "iterations": 12, "checkpoint_every": 4}


def test_default_interval_gives_about_200_rows():
    assert log_interval({"log_every": None}, 150_000) == 750
    assert log_interval({"log_every": None}, 12) == 1
    assert log_interval({"log_every": 0}, 1000) == 0


def test_warp_statistics_of_known_transforms():
    model = build_network("STN-C1", **TINY_BACKBONE)
    monitor = TrainingMonitor(model, torch.device("cpu"))
    angles = torch.tensor([10.0, 30.0])
    rotations = torch.cat([transformation("rotation", float(a), 1) for a in angles])
    scaled = identity(2) * torch.tensor([[[2.0], [2.0]]])  # √|det| = 2: log2 scale 1
    scaled[:, :, 2] = torch.tensor([[0.1, 0.0], [0.3, 0.0]])  # tx 0.1 and 0.3: spread 0.1
    logits, labels = torch.zeros(2, 10), torch.zeros(2, dtype=torch.long)
    monitor.observe(torch.tensor(1.5), logits, labels, {"C1": rotations, "C2": scaled})
    monitor.observe(torch.tensor(2.5), logits, labels, {"C1": rotations, "C2": scaled})
    row, divergence = monitor.read(2, 0.5, {"classifier": 0.1}, 1.0)
    assert divergence is None and row["loss"] == pytest.approx(2.0) and row["train_error"] == 0.0
    assert row["C1_abs_angle"] == pytest.approx(20.0, abs=1e-4)
    assert row["C1_angle_std"] == pytest.approx(10.0, abs=1e-3)
    # ‖R(φ) − I‖ over the six parameters is 2√2 sin(φ/2)
    expected = (2 * math.sqrt(2) * torch.sin(torch.deg2rad(angles) / 2)).mean()
    assert row["C1_displacement"] == pytest.approx(float(expected), rel=1e-5)
    assert row["C1_log2_scale"] == pytest.approx(0.0, abs=1e-6) and row["C1_shift_std"] < 1e-6
    assert row["C2_log2_scale"] == pytest.approx(1.0) and row["C2_log2_scale_std"] < 1e-6
    assert row["C2_shift_std"] == pytest.approx(0.1, rel=1e-4) and row["C2_angle_std"] < 1e-6
    assert row["images_per_second"] == pytest.approx(4.0)
    again, _ = monitor.read(3, 0.75, {"classifier": 0.1}, 1.0)  # the sums were reset
    assert again["loss"] == 0.0


def test_training_writes_a_log_whose_losses_are_the_steps_means(tmp_path):
    config = tiny_config(train=STEPS | {"log_every": 3})
    stats = train(config, tmp_path / "model.pt", progress=False)
    rows = read_log(log_path(tmp_path / "model.pt"))
    assert [row["step"] for row in rows] == [3, 6, 9, 12] and stats["log_rows"] == 4
    assert stats["status"] == "finished" and stats["final_loss"] == rows[-1]["loss"]
    for column in ("SL1_displacement", "SL1_angle_std", "grad_norm_localisation", "grad_norm_classifier"):
        assert all(math.isfinite(row[column]) and row[column] >= 0 for row in rows), column
    assert rows[0]["lr_classifier"] > rows[-1]["lr_classifier"]  # the cosine schedule
    # the steps' own losses, from a run without a log, average to the rows' losses
    per_step = []
    from stn import training

    original = training.TrainingStep.__call__

    def record(self, step):
        loss = original(self, step)
        per_step.append(float(loss))
        return loss

    training.TrainingStep.__call__ = record
    try:
        train(tiny_config(train=STEPS | {"log_every": 0}), tmp_path / "plain.pt", progress=False)
    finally:
        training.TrainingStep.__call__ = original
    means = [sum(per_step[i : i + 3]) / 3 for i in range(0, 12, 3)]
    assert [row["loss"] for row in rows] == pytest.approx(means, rel=1e-6)


def test_logging_changes_no_weight(tmp_path):
    train(tiny_config(train=STEPS | {"log_every": 2}), tmp_path / "logged.pt", progress=False)
    train(tiny_config(train=STEPS | {"log_every": 0}), tmp_path / "plain.pt", progress=False)
    logged, plain = load_torch(tmp_path / "logged.pt")["model"], load_torch(tmp_path / "plain.pt")["model"]
    assert logged.keys() == plain.keys()
    for key, value in plain.items():
        assert torch.equal(value, logged[key]), key
    assert read_log(log_path(tmp_path / "logged.pt"))
    assert log_path(tmp_path / "plain.pt").read_text() == ""  # no log: an empty file


def test_resumed_log_equals_an_uninterrupted_one(tmp_path):
    """A run stopped after a saved state (and a row written after it) resumes to the same log."""
    config = tiny_config(train=STEPS | {"log_every": 3})
    train(config, tmp_path / "reference" / "model.pt", progress=False)
    reference = read_log(log_path(tmp_path / "reference" / "model.pt"))

    from stn import training

    original = training._Resumable.save_state
    saved = []

    def crash_after_second_state(self, step, spent):
        original(self, step, spent)
        saved.append(step)
        if len(saved) == 2:
            raise KeyboardInterrupt  # after the state of step 8 (and the row of step 6)

    training._Resumable.save_state = crash_after_second_state
    try:
        with pytest.raises(KeyboardInterrupt):
            train(config, tmp_path / "run" / "model.pt", progress=False)
    finally:
        training._Resumable.save_state = original
    checkpoint = tmp_path / "run" / "model.pt"
    assert load_torch(state_path(checkpoint))["step"] == 8
    with open(log_path(checkpoint), "a") as log:
        log.write("9,0.07,1,1,99\n")  # a row a killed run wrote after its state: dropped
    train(config, checkpoint, progress=False)
    resumed = read_log(log_path(checkpoint))
    assert len(resumed) == len(reference)
    for ours, theirs in zip(resumed, reference, strict=True):
        for column in TIMING_COLUMNS:
            ours.pop(column), theirs.pop(column)
        assert ours == theirs


@pytest.mark.parametrize("lr, reason", [(1e4, "exceeds the bound"), (1e30, "not finite")])
def test_divergence_is_recorded_and_leaves_no_test_error(tmp_path, lr, reason, capsys):
    config = tiny_config(train=STEPS | {"lr": lr, "log_every": 1})
    stats = train(config, tmp_path / "model.pt", progress=False)
    assert stats["status"] == "diverged" and stats["diverged_step"] < 12
    assert reason in capsys.readouterr().err
    assert stats["log_rows"] <= stats["diverged_step"] + 1  # it ended at once
    prepare_test_set(config, tmp_path / "test.pt")
    metrics = evaluate(tmp_path / "model.pt", tmp_path / "test.pt", device="cpu")
    assert metrics["test_error"] is None and metrics["status"] == "diverged"
    assert not state_path(tmp_path / "model.pt").exists()


def test_divergence_fails_the_run_when_asked_naming_the_keys(tmp_path):
    config = tiny_config(train=STEPS | {"lr": 1e4, "on_divergence": "fail"})
    with pytest.raises(TrainingDiverged) as error:
        train(config, tmp_path / "model.pt", progress=False)
    message = str(error.value)
    for part in ("STN-SL1 on R seed 0 diverged at step", "train.lr", "loc_lr_multiplier", "grad_clip"):
        assert part in message
    assert not (tmp_path / "model.pt").exists()


def test_tensorboard_events_hold_the_logs_scalars(tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    config = tiny_config(train=STEPS | {"log_every": 4, "tensorboard": True})
    train(config, tmp_path / "model.pt", progress=False)
    events = accumulator.EventAccumulator(str(tmp_path))
    events.Reload()
    rows = read_log(log_path(tmp_path / "model.pt"))
    assert {"loss", "SL1_displacement", "train_error"} <= set(events.Tags()["scalars"])
    losses = events.Scalars("loss")
    assert [e.step for e in losses] == [4, 8, 12]
    assert [e.value for e in losses] == pytest.approx([row["loss"] for row in rows], rel=1e-6)


def test_the_first_non_finite_step_and_the_last_finite_loss_before_it_are_kept():
    model = build_network("STN-C1", **TINY_BACKBONE)
    monitor = TrainingMonitor(model, torch.device("cpu"))
    monitor.start(10)
    logits, labels, theta = torch.zeros(2, 10), torch.zeros(2, dtype=torch.long), identity(2)
    for value in (2.0, 3.0, float("nan"), 4.0):  # steps 10-13
        monitor.observe(torch.tensor(value), logits, labels, {"C1": theta})
    monitor.observe(torch.tensor(1.0), logits, labels, {"C1": torch.full((2, 2, 3), float("inf"))})
    divergence = monitor.nonfinite()
    assert divergence.step == 12 and divergence.last_finite_loss == 3.0
    warp_only = TrainingMonitor(model, torch.device("cpu"))  # a NaN warp, its loss still finite
    warp_only.observe(torch.tensor(2.0), logits, labels, {"C1": torch.full((2, 2, 3), float("nan"))})
    assert warp_only.nonfinite().step == 0 and warp_only.nonfinite().last_finite_loss is None
