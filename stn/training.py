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

from stn import provenance
from stn.backbones.blocks import ConvBlock
from stn.config import backbone_args, load_splits, resolve_run_config, task_spec
from stn.data.base import Task
from stn.devices import resolve_device
from stn.io import DamagedFileError, digest_path, load_torch_verified, redo_hint, save_torch_verified
from stn.monitor import Divergence, TrainingMonitor, log_interval
from stn.networks import STNetwork, build_network
from stn.sgd import SGD
from stn.train_log import TrainLog, log_path, tensorboard_writer_class

T = TypeVar("T")


def network_from_config(config: dict[str, Any]) -> STNetwork:
    model = config["model"]
    return build_network(model["network"], model["backbone"], **backbone_args(config))


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy per output position, summed over positions, mean over the batch."""
    positions = labels[0].numel()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)) * positions


Optimizer = SGD | torch.optim.SGD


def make_optimizer(model: STNetwork, train: dict[str, Any]) -> Optimizer:
    """SGD with momentum; localisation-only parameters get ``lr * loc_lr_multiplier``. On the
    CPU :class:`stn.sgd.SGD` (the same step without torch.optim's import of torch._dynamo)."""
    groups = [
        {"params": model.classifier_parameters(), "lr": train["lr"]},
        {"params": model.localisation_parameters(), "lr": train["lr"] * train["loc_lr_multiplier"]},
    ]
    on_cpu = all(param.device.type == "cpu" for param in model.parameters())
    return (SGD if on_cpu else torch.optim.SGD)(
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
def sgd_update(optimizer: Optimizer, lrs: list[Tensor]) -> None:
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

    The run config's ``train`` section picks how a step runs: ``channels_last`` (NHWC network
    and inputs) and ``polyphase`` (convs of few input channels and their max-pool as one
    polyphase conv, :class:`stn.backbones.blocks.ConvBlock`) on any device; on CUDA only,
    ``precision`` bf16 (autocast), ``cudnn_benchmark`` and ``cuda_graph``: after
    ``GRAPH_WARMUP`` eager steps, every full batch's step (rendering, forward, backward,
    update) is one captured CUDA graph replayed on fresh inputs; only the indices and the
    seeded random draws are written before each replay. The CPU stays fp32.
    """

    GRAPH_WARMUP = 3

    def __init__(
        self,
        model: STNetwork,
        optimizer: Optimizer,
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
        self.channels_last = train["channels_last"]
        self.use_graph = cuda and train["cuda_graph"]
        if cuda:
            torch.backends.cudnn.benchmark = train["cudnn_benchmark"]
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        for block in model.modules():
            if isinstance(block, ConvBlock):
                block.polyphase = train["polyphase"]
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.generator = torch.Generator(self.device)
        self._epoch, self._order = -1, torch.empty(0)
        self._eager_steps = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: dict[str, Any] = {}
        self.monitor = (
            TrainingMonitor(model, self.device, train["divergence_loss"])
            if log_interval(train, total)
            else None
        )

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
        """The batch's loss, from its indices and augmentation draws; the monitor, if any,
        observes the batch."""
        inputs, params = self.task.render(self.images[index], draws)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        pose = self.task.undo(params) if self.model.needs_pose else None
        with self._autocast():
            forward = self.model.run(inputs, pose)
        labels = self.labels[index]
        loss = classification_loss(forward.logits.float(), labels)
        if self.monitor is not None:
            self.monitor.observe(loss, forward.logits, labels, forward.thetas)
        return loss

    def _backward(self, loss: Tensor) -> None:
        loss.backward()
        if self.monitor is not None and (self.monitor.gradients_due or self.use_graph):
            self.monitor.observe_gradients()
        if self.train["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train["grad_clip"])

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
        self._backward(loss)
        self.optimizer.step()
        return loss.detach()

    def _capture(self, index: Tensor, draws: dict[str, Tensor]) -> None:
        static = {"index": index.clone(), "draws": {k: v.clone() for k, v in draws.items()}}
        static["lrs"] = [torch.tensor(g["lr"], device=self.device) for g in self.optimizer.param_groups]

        def warm_up() -> None:  # its gradients (and what the monitor saw) are discarded
            monitor, self.monitor = self.monitor, None
            self.loss(static["index"], static["draws"]).backward()
            self.monitor = monitor
            self.optimizer.zero_grad(set_to_none=True)

        def step() -> Tensor:
            loss = self.loss(static["index"], static["draws"])
            self._backward(loss)
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


class TrainingDiverged(RuntimeError):
    """A run diverged and its config says ``train.on_divergence: fail``."""


def divergence_message(config: dict[str, Any], divergence: Divergence) -> str:
    """What diverged, where, and the keys that steady it."""
    last = "none" if divergence.last_finite_loss is None else f"{divergence.last_finite_loss:.4g}"
    train = config["train"]
    return (
        f"{config['model']['network']} on {config['task']['name']} seed {config['seed']} diverged at step "
        f"{divergence.step}: {divergence.reason} (last finite loss {last}). Lower train.lr "
        f"(now {train['lr']}) or train.loc_lr_multiplier (now {train['loc_lr_multiplier']}), "
        f"or set train.grad_clip (now {train['grad_clip']}), for this network in `overrides`; "
        "train.on_divergence: record keeps the job going and records the run as diverged."
    )


class _Resumable:
    """A run's model, optimiser, step and log, and its resume state at ``<checkpoint>.state``."""

    def __init__(self, config: dict[str, Any], checkpoint: Path, device: torch.device) -> None:
        self.config, self.checkpoint, self.device = config, checkpoint, device
        splits = load_splits(config)
        images, labels = splits.train_images.to(device), splits.train_labels.to(device)
        self.steps = total_steps(config, len(images))
        self.steps_per_epoch = math.ceil(len(images) / config["train"]["batch_size"])
        torch.manual_seed(config["seed"])
        self.model = network_from_config(config).to(device)
        self.optimizer = make_optimizer(self.model, config["train"])
        self.step = TrainingStep(
            self.model,
            self.optimizer,
            images,
            labels,
            task_spec(config),
            config["train"],
            config["seed"],
            self.steps,
        )
        self.start, self.elapsed, rows = 0, 0.0, []
        state = self._load_state()
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"].cpu())
            if device.type == "cuda" and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
            if self.step.monitor is not None:
                self.step.monitor.load_state_dict(state["monitor"])
            self.start, self.elapsed, rows = state["step"], state["elapsed"], state["log_rows"]
        if self.step.monitor is not None:
            self.step.monitor.start(self.start)
        self.log = TrainLog(log_path(checkpoint), rows, self.start, config["train"]["tensorboard"])

    def _load_state(self) -> dict[str, Any] | None:
        resume = state_path(self.checkpoint)
        if not resume.exists():
            return None
        try:
            state = load_torch_verified(resume, self.device)
        except DamagedFileError as err:
            # only progress is lost: the run is recomputed from its start, to the same weights
            print(f"warning: {err} Starting this run afresh.", file=sys.stderr, flush=True)
            return None
        if state["config"] != self.config:
            raise RuntimeError(f"{resume} belongs to a different config; delete it to start afresh")
        return state

    def save_state(self, step: int, spent: float) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": step,
            "elapsed": spent,
            "config": self.config,
            "rng": torch.get_rng_state(),
            "log_rows": self.log.rows,
        }
        if self.step.monitor is not None:
            state["monitor"] = self.step.monitor.state_dict()
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        save_torch_verified(state, state_path(self.checkpoint))

    def log_row(self, done: int, seconds: float) -> Divergence | None:
        """Read the monitor's interval ending at step ``done`` into the log."""
        names = ("classifier", "localisation")
        lrs = {name: group["lr"] for name, group in zip(names, self.optimizer.param_groups, strict=False)}
        row, divergence = self.step.monitor.read(done, done / self.steps_per_epoch, lrs, seconds)
        self.log.append(row)
        return divergence


def _run_steps(run: _Resumable, progress: bool) -> tuple[Tensor, Divergence | None]:
    """Train ``run`` from its start to its end, or to its divergence; returns the last loss."""
    train_cfg, monitor = run.config["train"], run.step.monitor
    every = log_interval(train_cfg, run.steps)
    began = last_row = time.perf_counter()
    bar = tqdm(
        range(run.start, run.steps),
        initial=run.start,
        total=run.steps,
        disable=not progress,
        desc=f"{run.config['model']['network']} {run.config['task']['name']} seed {run.config['seed']}",
        mininterval=2.0,
    )
    loss, divergence = torch.zeros(()), None
    for step in bar:
        done = step + 1
        if monitor is not None:
            monitor.gradients_due = done % every == 0 or done == run.steps
        loss = run.step(step)
        if monitor is not None and (done % every == 0 or done == run.steps):
            divergence = run.log_row(done, time.perf_counter() - last_row)
            last_row = time.perf_counter()
        checkpointing = done % train_cfg["checkpoint_every"] == 0 and done < run.steps
        if divergence is None and (checkpointing or done == run.steps):
            divergence = monitor.nonfinite() if monitor is not None else _nonfinite(loss, done)
        if divergence is not None:
            break
        if checkpointing:
            run.save_state(done, run.elapsed + time.perf_counter() - began)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    run.elapsed += time.perf_counter() - began
    return loss, divergence


def _nonfinite(loss: Tensor, step: int) -> Divergence | None:
    """Without a log: a divergence when the last step's loss is not finite."""
    if torch.isfinite(loss).item():
        return None
    return Divergence(step - 1, "the loss is not finite (no training log: found at a checkpoint)", None)


def train(
    config: dict[str, Any] | Path | str,
    checkpoint: Path | str,
    *,
    progress: bool = True,
    runs_per_gpu: int = 1,
) -> dict[str, Any]:
    """Train the run described by ``config`` and write its final checkpoint and training log
    (``train_log.csv`` beside it, :mod:`stn.train_log`).

    ``config``: a resolved run config (:func:`stn.config.resolve_run_config`, as the CLI and
    :func:`stn.experiment.run_config` give it), used as it is; or a run config's YAML file.

    ``runs_per_gpu``: on a machine with several GPUs and no scheduler, how many runs share
    each one (:func:`stn.devices.resolve_device`).

    Progress is saved every ``checkpoint_every`` steps to ``<checkpoint>.state``; a
    rerun with the same config resumes from there and ends with the same weights (and log) as
    an uninterrupted run. A diverged run (:class:`stn.monitor.Divergence`) ends at once: with
    ``train.on_divergence: record`` its checkpoint says ``status: diverged``; with ``fail``,
    :class:`TrainingDiverged` is raised. Returns the training statistics (also stored in the
    checkpoint).
    """
    from stn.run_lock import finished_stats, hold_run

    if not isinstance(config, dict):
        config = resolve_run_config(config)
    checkpoint = Path(checkpoint)
    with hold_run(checkpoint):  # a second trainer of the run waits here, then finds it finished
        finished = finished_stats(checkpoint, config)
        return finished if finished is not None else _train_held(config, checkpoint, progress, runs_per_gpu)


class GpuOutOfMemory(RuntimeError):
    """A run does not fit its GPU; the message says which run, what it asked for and the fix."""


def out_of_memory_message(config: dict[str, Any], device: torch.device, runs_per_gpu: int) -> str:
    """What ran out of GPU memory, on which card, and what to change."""
    total = torch.cuda.get_device_properties(device).total_memory / 2**30
    return (
        f"{config['model']['network']} on {config['task']['name']} seed {config['seed']} ran out of "
        f"memory on {device} ({torch.cuda.get_device_name(device)}, {total:.1f} GiB) with batch_size "
        f"{config['train']['batch_size']} and runs_per_gpu {runs_per_gpu} (runs sharing the card). Lower "
        "resources.runs_per_gpu, or train.batch_size for this network in `overrides`; the resume "
        "state, if any, is kept and the next run resumes from it."
    )


def _train_held(config: dict[str, Any], checkpoint: Path, progress: bool, runs_per_gpu: int) -> dict:
    """:func:`train` of a run whose lock (:func:`stn.run_lock.hold_run`) this process holds."""
    if config["train"]["tensorboard"]:
        tensorboard_writer_class()  # a missing package fails before any work
    device = resolve_device(config["device"], runs_per_gpu=runs_per_gpu)
    try:
        run = _Resumable(config, checkpoint, device)
        run.model.train()
        loss, divergence = _run_steps(run, progress)
    except torch.cuda.OutOfMemoryError:
        raise GpuOutOfMemory(out_of_memory_message(config, device, runs_per_gpu)) from None
    run.log.close()
    if divergence is not None and config["train"]["on_divergence"] == "fail":
        raise TrainingDiverged(divergence_message(config, divergence))
    rows = run.log.rows
    stats = {
        "status": "finished" if divergence is None else "diverged",
        "steps": run.steps,
        "final_loss": rows[-1]["loss"] if rows else float(loss.item()),
        "train_seconds": run.elapsed,
        "train_images_per_second": run.steps * config["train"]["batch_size"] / max(run.elapsed, 1e-9),
        "device": str(device),
        "log_rows": len(rows),
        provenance.TRAIN_STATS_KEY: provenance.describe(device),
    }
    if divergence is not None:
        print(f"warning: {divergence_message(config, divergence)}", file=sys.stderr, flush=True)
        stats |= {"diverged_step": divergence.step, "last_finite_loss": divergence.last_finite_loss}
    # the SHA-256 sidecar is written after the checkpoint and before the resume state goes, so a
    # crash at any point leaves either the state to resume from or a verifiable checkpoint
    content = {"model": run.model.state_dict(), "config": config, "train_stats": stats}
    save_torch_verified(content, checkpoint)
    resume = state_path(checkpoint)
    resume.unlink(missing_ok=True)
    digest_path(resume).unlink(missing_ok=True)
    return stats


def retrain_hint(path: Path | str) -> str:
    """How to retrain the checkpoint at ``path`` of the workflow."""
    return redo_hint(path, "Retrain")


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
