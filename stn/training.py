"""Config-driven training with resumable, atomically written checkpoints."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from stn.config import backbone_args, resolve_run_config, task_spec
from stn.data.augment import augment, undo_matrix
from stn.data.mnist import digits_from_config
from stn.devices import resolve_device
from stn.io import DamagedFileError, digest_path, load_torch_verified, save_torch_verified
from stn.networks import STNetwork, build_network


def network_from_config(config: dict[str, Any]) -> STNetwork:
    model = config["model"]
    return build_network(model["network"], model["backbone"], **backbone_args(config))


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy per output position, summed over positions, mean over the batch."""
    positions = labels[0].numel()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)) * positions


def make_optimizer(model: STNetwork, train: dict[str, Any]) -> torch.optim.SGD:
    """SGD with momentum; localisation-only parameters get ``lr * loc_lr_multiplier``."""
    groups = [
        {"params": model.classifier_parameters(), "lr": train["lr"]},
        {"params": model.localisation_parameters(), "lr": train["lr"] * train["loc_lr_multiplier"]},
    ]
    return torch.optim.SGD(
        [g for g in groups if g["params"]],
        lr=train["lr"],
        momentum=train["momentum"],
        weight_decay=train["weight_decay"],
    )


def lr_factor(step: int, total: int, train: dict[str, Any]) -> float:
    """The learning-rate multiplier at ``step`` of ``total`` under the configured schedule."""
    if train["schedule"] == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / total))
    if train["schedule"] == "step":
        return train["gamma"] ** sum(step >= m * total for m in train["milestones"])
    return 1.0


def total_steps(config: dict[str, Any], num_train: int) -> int:
    train = config["train"]
    if train["iterations"]:
        return train["iterations"]
    return train["epochs"] * math.ceil(num_train / train["batch_size"])


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**63)


def batch_indices(step: int, num_train: int, batch_size: int, seed: int) -> Tensor:
    """The training indices of ``step``: a seeded permutation per epoch, so any step can be
    recomputed after a restart."""
    per_epoch = math.ceil(num_train / batch_size)
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(num_train, generator=torch.Generator().manual_seed(_step_seed(seed, -1 - epoch)))
    return order[position * batch_size : (position + 1) * batch_size]


def state_path(checkpoint: Path) -> Path:
    """Where the resumable state of an unfinished run lives."""
    return checkpoint.with_name(checkpoint.name + ".state")


def train(
    config: dict[str, Any] | Path | str,
    checkpoint: Path | str,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the run described by ``config`` and write its final checkpoint.

    Progress is saved every ``checkpoint_every`` steps to ``<checkpoint>.state``; a
    rerun with the same config resumes from there and ends with the same weights as
    an uninterrupted run. Returns the training statistics (also stored in the checkpoint).
    """
    config = resolve_run_config(config)
    checkpoint = Path(checkpoint)
    device = resolve_device(config["device"])
    seed, train_cfg, task = config["seed"], config["train"], task_spec(config)

    data = config["data"]
    digits = digits_from_config(data)
    images, labels = digits.train_images.to(device), digits.train_labels.to(device)
    steps = total_steps(config, len(images))

    torch.manual_seed(seed)
    model = network_from_config(config).to(device)
    optimizer = make_optimizer(model, train_cfg)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    start, elapsed = 0, 0.0
    resume = state_path(checkpoint)
    state = None
    if resume.exists():
        try:
            state = load_torch_verified(resume, device)
        except DamagedFileError as err:
            # only progress is lost: the run is recomputed from its start, to the same weights
            print(f"warning: {err} Starting this run afresh.", file=sys.stderr, flush=True)
    if state is not None:
        if state["config"] != config:
            raise RuntimeError(f"{resume} belongs to a different config; delete it to start afresh")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"].cpu())
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
        start, elapsed = state["step"], state["elapsed"]

    def save_state(step: int, spent: float) -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "elapsed": spent,
            "config": config,
            "rng": torch.get_rng_state(),
        }
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        save_torch_verified(state, resume)

    model.train()
    began = time.perf_counter()
    bar = tqdm(
        range(start, steps),
        initial=start,
        total=steps,
        disable=not progress,
        desc=f"{config['model']['network']} {task.name} seed {seed}",
        mininterval=2.0,
    )
    loss = torch.zeros(())
    for step in bar:
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * lr_factor(step, steps, train_cfg)
        index = batch_indices(step, len(images), train_cfg["batch_size"], seed).to(device)
        generator = torch.Generator(device).manual_seed(_step_seed(seed, step))
        inputs, params = augment(images[index], task, generator)
        pose = undo_matrix(params, task) if model.needs_pose else None
        loss = classification_loss(model(inputs, pose), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if train_cfg["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg["grad_clip"])
        optimizer.step()
        if (step + 1) % train_cfg["checkpoint_every"] == 0 and step + 1 < steps:
            save_state(step + 1, elapsed + time.perf_counter() - began)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    elapsed += time.perf_counter() - began
    stats = {
        "steps": steps,
        "final_loss": float(loss.item()),
        "train_seconds": elapsed,
        "train_images_per_second": steps * train_cfg["batch_size"] / max(elapsed, 1e-9),
        "device": str(device),
    }
    # the SHA-256 sidecar is written after the checkpoint and before the resume state goes, so a
    # crash at any point leaves either the state to resume from or a verifiable checkpoint
    save_torch_verified({"model": model.state_dict(), "config": config, "train_stats": stats}, checkpoint)
    resume.unlink(missing_ok=True)
    digest_path(resume).unlink(missing_ok=True)
    return stats


def retrain_hint(path: Path | str) -> str:
    """How to retrain the checkpoint at ``path`` of the workflow."""
    return (
        f"Retrain it: `rm {path}`, then run the same command again (e.g. `bash run.sh`); "
        f"or `bash run.sh --forcerun {path}` (snakemake --cores all --forcerun {path})."
    )


def load_checkpoint(path: Path | str, device: torch.device | str = "cpu") -> tuple[STNetwork, dict[str, Any]]:
    """The trained network of a checkpoint (in eval mode) and the checkpoint's contents.

    Raises:
        stn.io.DamagedFileError: the checkpoint is missing, fails its SHA-256 record
            (``<path>.sha256``) or cannot be loaded; the message says how to retrain it.
    """
    content = load_torch_verified(path, device, remedy=retrain_hint(path))
    model = network_from_config(content["config"]).to(device)
    model.load_state_dict(content["model"])
    return model.eval(), content
