"""Config-driven training with resumable, atomically written checkpoints."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from stn.backbones import ConvBlock
from stn.config import backbone_args, load_splits, resolve_run_config, task_spec
from stn.data.registry import Task
from stn.devices import resolve_device
from stn.io import DamagedFileError, digest_path, load_torch_verified, save_torch_verified
from stn.networks import STNetwork, build_network

T = TypeVar("T")


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


def epoch_order(epoch: int, num_train: int, seed: int) -> Tensor:
    """The seeded permutation of the training set in ``epoch`` (drawn on the CPU, so every
    device trains on the same batches)."""
    return torch.randperm(num_train, generator=torch.Generator().manual_seed(_step_seed(seed, -1 - epoch)))


def batch_indices(step: int, num_train: int, batch_size: int, seed: int) -> Tensor:
    """The training indices of ``step``: a seeded permutation per epoch, so any step can be
    recomputed after a restart."""
    epoch, position = divmod(step, math.ceil(num_train / batch_size))
    return epoch_order(epoch, num_train, seed)[position * batch_size : (position + 1) * batch_size]


@torch.no_grad()
def sgd_update(optimizer: torch.optim.SGD, lrs: list[Tensor]) -> None:
    """``optimizer.step()`` of plain SGD with momentum and weight decay, written with the
    learning rates as device tensors ``lrs`` (one per group) so that a CUDA graph can
    capture it while the schedule changes them. Uses (and needs) the optimizer's momentum
    buffers, so steps of either kind interleave."""
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        params = [p for p in group["params"] if p.grad is not None]
        grads = [p.grad for p in params]
        if group["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        if group["momentum"]:
            buffers = [optimizer.state[p]["momentum_buffer"] for p in params]
            torch._foreach_mul_(buffers, group["momentum"])
            torch._foreach_add_(buffers, grads)
            grads = buffers
        torch._foreach_sub_(params, torch._foreach_mul(grads, lr))


def capture_cuda_graph(
    body: Callable[[], T], device: torch.device, warm_up: Callable[[], object] | None = None
) -> tuple[torch.cuda.CUDAGraph, T]:
    """Capture ``body`` as a CUDA graph; returns the graph and what ``body`` returned (the
    tensors each replay overwrites). ``warm_up`` (default: ``body``) runs once on the capture
    stream first, so lazily created state (library handles, workspaces) exists before capture."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        (warm_up or body)()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        result = body()
    return graph, result


class TrainingStep:
    """One run's optimisation step: the step's batch, its augmentation, forward, backward and
    update, for any step number in any order (each step's batch and augmentation are seeded
    by the step, so a resumed run repeats an uninterrupted one).

    On CUDA, the run config's ``train`` section picks how a step runs: ``precision`` bf16
    (autocast), ``channels_last`` and ``cudnn_benchmark``, ``polyphase`` (convs of few input
    channels and their max-pool as one polyphase conv, :class:`stn.backbones.ConvBlock`),
    and ``cuda_graph``: after ``GRAPH_WARMUP`` eager steps, every full batch's step (rendering,
    forward, backward, update) is one captured CUDA graph replayed on fresh inputs; only the
    indices and the seeded random draws are written before each replay. On the CPU they
    change nothing.
    """

    GRAPH_WARMUP = 3

    def __init__(
        self,
        model: STNetwork,
        optimizer: torch.optim.SGD,
        images: Tensor,
        labels: Tensor,
        task: Task,
        train: dict[str, Any],
        seed: int,
        total: int,
    ) -> None:
        self.model, self.optimizer, self.images, self.labels = model, optimizer, images, labels
        self.task, self.train, self.seed, self.total = task, train, seed, total
        self.device = images.device
        cuda = self.device.type == "cuda"
        self.bf16 = cuda and train["precision"] == "bf16"
        self.channels_last = cuda and train["channels_last"]
        self.use_graph = cuda and train["cuda_graph"]
        if cuda:
            torch.backends.cudnn.benchmark = train["cudnn_benchmark"]
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        for block in model.modules():
            if isinstance(block, ConvBlock):
                block.polyphase = cuda and train["polyphase"]
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.generator = torch.Generator(self.device)
        self._epoch, self._order = -1, torch.empty(0)
        self._eager_steps = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: dict[str, Any] = {}

    @property
    def captured(self) -> bool:
        """Whether full-batch steps now replay a captured CUDA graph."""
        return self._graph is not None

    def indices(self, step: int) -> Tensor:
        """The batch of ``step`` (:func:`batch_indices`), from the epoch's order kept on the device."""
        batch = self.train["batch_size"]
        epoch, position = divmod(step, math.ceil(len(self.images) / batch))
        if epoch != self._epoch:
            self._epoch, self._order = epoch, epoch_order(epoch, len(self.images), self.seed).to(self.device)
        return self._order[position * batch : (position + 1) * batch]

    def _autocast(self) -> contextlib.AbstractContextManager:
        # no weight cache: a cached cast would be captured once and go stale in a CUDA graph
        if self.bf16:
            return torch.autocast("cuda", torch.bfloat16, cache_enabled=False)
        return contextlib.nullcontext()

    def loss(self, index: Tensor, draws: dict[str, Tensor]) -> Tensor:
        """The batch's loss, from its indices and augmentation draws."""
        inputs, params = self.task.render(self.images[index], draws)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        pose = self.task.undo(params) if self.model.needs_pose else None
        with self._autocast():
            logits = self.model(inputs, pose)
        return classification_loss(logits.float(), self.labels[index])

    def __call__(self, step: int) -> Tensor:
        """Take optimisation step ``step``; returns its loss (a device tensor, not synchronised)."""
        factor = lr_factor(step, self.total, self.train)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        index = self.indices(step)
        self.generator.manual_seed(_step_seed(self.seed, step))
        draws = self.task.draw(len(index), self.generator, self.device)
        if self.use_graph and len(index) == self.train["batch_size"]:
            if self._graph is None and self._eager_steps >= self.GRAPH_WARMUP:
                try:
                    self._capture(index, draws)
                except RuntimeError as error:  # the run goes on, eagerly, to the same result
                    print(f"warning: CUDA graph capture failed, training eagerly: {error}", file=sys.stderr)
                    self.use_graph = False
                    self.optimizer.zero_grad(set_to_none=True)
            if self._graph is not None:
                return self._replay(index, draws)
        self._eager_steps += 1
        loss = self.loss(index, draws)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.train["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train["grad_clip"])
        self.optimizer.step()
        return loss.detach()

    def _capture(self, index: Tensor, draws: dict[str, Tensor]) -> None:
        static = {"index": index.clone(), "draws": {k: v.clone() for k, v in draws.items()}}
        static["lrs"] = [torch.tensor(g["lr"], device=self.device) for g in self.optimizer.param_groups]

        def warm_up() -> None:  # its gradients are discarded
            self.loss(static["index"], static["draws"]).backward()
            self.optimizer.zero_grad(set_to_none=True)

        def step() -> Tensor:
            loss = self.loss(static["index"], static["draws"])
            loss.backward()
            if self.train["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train["grad_clip"])
            sgd_update(self.optimizer, static["lrs"])
            return loss.detach()

        self._graph, static["loss"] = capture_cuda_graph(step, self.device, warm_up)
        self._static = static

    def _replay(self, index: Tensor, draws: dict[str, Tensor]) -> Tensor:
        static = self._static
        static["index"].copy_(index)
        for key, value in draws.items():
            static["draws"][key].copy_(value)
        for lr, group in zip(static["lrs"], self.optimizer.param_groups, strict=True):
            lr.fill_(group["lr"])
        self._graph.replay()
        return static["loss"]


def state_path(checkpoint: Path) -> Path:
    """Where the resumable state of an unfinished run lives."""
    return checkpoint.with_name(checkpoint.name + ".state")


def train(
    config: dict[str, Any] | Path | str,
    checkpoint: Path | str,
    *,
    progress: bool = True,
    runs_per_gpu: int = 1,
) -> dict[str, Any]:
    """Train the run described by ``config`` and write its final checkpoint.

    ``runs_per_gpu``: on a machine with several GPUs and no scheduler, how many runs share
    each one (:func:`stn.devices.resolve_device`).

    Progress is saved every ``checkpoint_every`` steps to ``<checkpoint>.state``; a
    rerun with the same config resumes from there and ends with the same weights as
    an uninterrupted run. Returns the training statistics (also stored in the checkpoint).
    """
    from stn.run_lock import finished_stats, hold_run

    config = resolve_run_config(config)
    checkpoint = Path(checkpoint)
    with hold_run(checkpoint):  # a second trainer of the run waits here, then finds it finished
        finished = finished_stats(checkpoint, config)
        return finished if finished is not None else _train_held(config, checkpoint, progress, runs_per_gpu)


def _train_held(config: dict[str, Any], checkpoint: Path, progress: bool, runs_per_gpu: int) -> dict:
    """:func:`train` of a run whose lock (:func:`stn.run_lock.hold_run`) this process holds."""
    device = resolve_device(config["device"], runs_per_gpu=runs_per_gpu)
    seed, train_cfg, task = config["seed"], config["train"], task_spec(config)

    splits = load_splits(config)
    images, labels = splits.train_images.to(device), splits.train_labels.to(device)
    steps = total_steps(config, len(images))

    torch.manual_seed(seed)
    model = network_from_config(config).to(device)
    optimizer = make_optimizer(model, train_cfg)
    step_once = TrainingStep(model, optimizer, images, labels, task, train_cfg, seed, steps)
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
        loss = step_once(step)
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
