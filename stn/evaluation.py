"""Fixed test sets and the evaluation of trained networks on them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stn.config import load_splits, load_yaml, resolve_test_set_config, task_spec, test_set_key
from stn.devices import resolve_device
from stn.evaluation_memo import memo_key, memo_path, write_memo
from stn.invariance import full_turn, predicted_angles, rotation_responses, rotation_undone
from stn.io import DamagedFileError, load_torch_verified, redo_hint, save_json, save_torch_verified
from stn.networks import STNetwork
from stn.statistics import circular_mean, medoid_spread, pose_spread, wrap_degrees
from stn.training import load_checkpoint


def prepare_test_set(config: dict[str, Any] | Path | str, out: Path | str) -> Path:
    """Generate a task's fixed test set once and save it, with its SHA-256 in ``<out>.sha256``
    (see :func:`stn.io.save_torch_verified`). ``config``: a run config, or its ``data`` and
    ``task`` sections (:func:`stn.config.resolve_test_set_config`); a task that draws its test
    set is seeded by ``task.test_seed``."""
    if not isinstance(config, dict):
        config = load_yaml(config)
    config = resolve_test_set_config(config)
    splits = load_splits(config)
    images, labels, params = task_spec(config).test_set(
        splits.test_images, splits.test_labels, config["task"].get("test_seed", 0)
    )
    save_torch_verified({"images": images, "labels": labels, "params": params, **test_set_key(config)}, out)
    return Path(out)


def regenerate_hint(path: Path | str) -> str:
    """How to regenerate the test set at ``path`` of the workflow."""
    return f"{redo_hint(path, 'Regenerate')} It is generated from its seed, so the metrics stay the same."


def load_test_set(path: Path | str, config: dict[str, Any]) -> dict[str, Any]:
    """A prepared test set, checked against the run ``config`` it is used with, with ``poses``:
    the warp of each image that undoes its augmentation (the task's ``undo``).

    Raises:
        stn.io.DamagedFileError: the file is missing, fails its SHA-256 record
            (``<path>.sha256``) or cannot be loaded; the message says how to regenerate it.
    """
    test = load_torch_verified(path, remedy=regenerate_hint(path))
    expected = test_set_key(config)
    if {"data": test["data"], "task": test["task"]} != expected:
        raise ValueError(
            f"{path} was made for another data set or task: "
            f"{ {'data': test['data'], 'task': test['task']} } != {expected}"
        )
    if "params" not in test:
        raise ValueError(f"{path} predates stored augmentation parameters: delete it to regenerate it")
    return test | {"poses": task_spec(config).undo(test["params"])}


@torch.no_grad()
def error_rate(
    model: STNetwork,
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    device: torch.device,
    poses: Tensor | None = None,
) -> float:
    """Test error in %: a sample is correct when every output position is. ``poses`` go to
    oracle transformers."""
    model.eval()
    wrong = 0
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device).float() / 255.0
        y = labels[start : start + batch_size].to(device)
        pose = None if poses is None else poses[start : start + batch_size].to(device)
        predicted = model(x, pose).argmax(-1)
        wrong += int((predicted != y).reshape(len(y), -1).any(dim=1).sum())
    return 100.0 * wrong / len(images)


ROTATION_PROBE_IMAGES = 500


def diverged(checkpoint: dict[str, Any]) -> bool:
    """Whether a checkpoint's run diverged (:func:`stn.training.train`): it has no test error."""
    return checkpoint["train_stats"].get("status") == "diverged"


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    return {"network": config["model"]["network"], "task": config["task"]["name"], "seed": config["seed"]}


def evaluate(
    checkpoint: Path | str,
    test_set: Path | str,
    out: Path | str | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Evaluate a checkpoint on a prepared test set; write the metrics JSON to ``out``."""
    dev = resolve_device(device, claim=False)
    model, content = load_checkpoint(checkpoint, dev)
    config = content["config"]
    test = load_test_set(test_set, config)
    if diverged(content):
        metrics = {**_identity(config), "test_error": None, "test_size": len(test["labels"])}
        metrics |= {"rotation_undone": None, "pose_spread": None, **content["train_stats"], "config": config}
        if out is not None:
            save_json(metrics, out)
        return metrics
    poses = test["poses"].to(dev) if model.needs_pose else None
    batch_size = config["train"]["eval_batch_size"]
    began = time.perf_counter()
    error = error_rate(model, test["images"], test["labels"], batch_size, dev, poses)
    seconds = time.perf_counter() - began
    undone = spread = None
    if task_spec(config).rotation and model.spec.transformers:
        probe = slice(0, ROTATION_PROBE_IMAGES)
        images = test["images"][probe].to(dev).float() / 255.0
        undone = rotation_undone(model, images, poses=None if poses is None else poses[probe])
        if test["params"]["angle"].abs().max() > 0:  # the test images are rotated: how far back?
            predicted = predicted_angles(model, test["images"], poses, batch_size)
            spread = pose_spread((test["params"]["angle"] + predicted).numpy(), test["labels"].numpy())
    metrics = {
        **_identity(config),
        "test_error": error,
        "test_size": len(test["labels"]),
        "rotation_undone": undone,
        "pose_spread": spread,
        "eval_seconds": seconds,
        **content["train_stats"],
        "config": config,
    }
    if out is not None:
        save_json(metrics, out)
    return metrics


def evaluate_for_memo(checkpoint: Path | str, test_set: Path | str, code: list[str], device: str) -> str:
    """The training job's evaluation of its run, left for the run's evaluation job
    (:mod:`stn.evaluation_memo`) when the task's test set exists; says what it did."""
    memo_path(checkpoint).unlink(missing_ok=True)  # a memo of an earlier training is of no use
    if not Path(test_set).is_file():
        return f"{test_set} does not exist yet: the evaluation job evaluates the run"
    try:
        key = memo_key(checkpoint, test_set, code, device)
        metrics = evaluate(checkpoint, test_set, None, device)
        if memo_key(checkpoint, test_set, code, device) != key:  # replaced meanwhile
            return "a test set or code input changed during the evaluation: the evaluation job evaluates"
    except (DamagedFileError, OSError, ValueError) as error:
        return f"not evaluated here ({error}): the evaluation job evaluates the run"
    write_memo(checkpoint, key, metrics)
    return f"evaluated for the evaluation job: test error {metrics['test_error']}"


PREDICTED_ANGLE_BINS = 72  # 5° bins of the predicted angle in the rotation analysis
SPREAD_PERIODS = (360, 180)


def summarise_rotations(predicted: np.ndarray, angles: tuple[float, ...]) -> dict[str, Any]:
    """The rotation analysis of :func:`stn.invariance.rotation_responses`'s ``predicted``
    (N, A) angles at the applied ``angles``: per applied angle, the circular mean and the
    histogram of the predicted angle; the residual (applied + predicted) pose's medoid spread
    (:func:`stn.statistics.medoid_spread`), averaged over the images, modulo 360° (the distance
    of two rotations) and modulo 180° (the authors' measure, under which an image turned upside
    down counts as aligned); and the spread of a transformer that ignores rotations, for scale."""
    applied = np.asarray(angles, dtype=float)
    predicted = wrap_degrees(predicted)
    residual = wrap_degrees(applied + predicted)
    edges = np.linspace(-180.0, 180.0, PREDICTED_ANGLE_BINS + 1)
    histogram = np.stack([np.histogram(predicted[:, j], bins=edges)[0] for j in range(len(applied))])
    return {
        "angles": applied.tolist(),
        "images": len(predicted),
        "predicted_mean": circular_mean(predicted, axis=0).tolist(),
        "predicted_edges": edges.tolist(),
        "predicted_histogram": histogram.tolist(),
        "spread": {str(p): float(medoid_spread(residual, p).mean()) for p in SPREAD_PERIODS},
        "spread_ignoring": {str(p): float(medoid_spread(applied[None], p)[0]) for p in SPREAD_PERIODS},
    }


def analyse_rotations(
    checkpoint: Path | str,
    test_set: Path | str,
    out: Path | str | None = None,
    angles: int = 17,
    images: int | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """The authors' rotation analysis of a trained network: every test image (the first
    ``images``, or all) rotated to ``angles`` angles over [-180, 180), the rotation its
    transformers apply read from the composed warp (:func:`summarise_rotations`); written as
    JSON to ``out``."""
    dev = resolve_device(device, claim=False)
    model, content = load_checkpoint(checkpoint, dev)
    config = content["config"]
    test = load_test_set(test_set, config)
    if diverged(content):
        result = {**_identity(config), "status": "diverged"}
        if out is not None:
            save_json(result, out)
        return result
    subset = slice(0, images)
    poses = test["poses"][subset] if model.needs_pose else None
    turn = full_turn(angles)
    predicted = rotation_responses(
        model, test["images"][subset], turn, poses, config["train"]["eval_batch_size"]
    ).numpy()
    result = {**_identity(config), "status": "finished", **summarise_rotations(predicted, turn)}
    if out is not None:
        save_json(result, out)
    return result
