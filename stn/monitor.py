"""What a run did while it trained: per-interval sums accumulated on the device, read as log rows.

:class:`TrainingMonitor` adds each step's loss, errors, transformer warps and gradient norms
to sums that stay on the device (inside a captured CUDA graph too): no step synchronises
with the host. :meth:`TrainingMonitor.read` turns the sums of an interval into one row of
``train_log.csv`` and says whether the run diverged.

Per transformer (by its label in :class:`stn.networks.Forward`, e.g. ``C1``, ``SL3.2``) a row
holds, over the interval's images:

- ``displacement``: the mean of ‖θ − I‖ over the six parameters;
- ``abs_angle`` and ``angle_std``: the mean absolute rotation of θ in degrees, read as the
  angle histogram reads it (:func:`stn.geometry.rotation_angle`), and its standard deviation;
- ``log2_scale`` and ``log2_scale_std``: the mean log2 of θ's scale, √|det A| (> 0: it samples
  a larger region, zooming out), and its standard deviation;
- ``shift_std``: the spread of θ's translation, √(var tx + var ty), in normalised coordinates.

The gradient norms are those of the interval's last step (:meth:`TrainingMonitor.observe_gradients`).

The spreads tell a transformer that aligns each image from one that applies one warp to all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stn.geometry import rotation_angle
from stn.networks import STNetwork

LOG_ROWS = 200
"""The rows a run's log has by default (``train.log_every: null``)."""
TRANSFORMER_COLUMNS = ("displacement", "abs_angle", "angle_std", "log2_scale", "log2_scale_std", "shift_std")
DIVERGENCE_FACTOR = 10.0
"""The default loss bound: this many times ln(classes) per output position, the loss of a
uniform guess."""
_RUN_SUMS = ("steps", "images", "loss", "wrong", "nonfinite", "grad_localisation", "grad_classifier")


def log_interval(train: dict[str, Any], total: int) -> int:
    """Steps between log rows: ``train.log_every``, or (null) about :data:`LOG_ROWS` rows a run;
    0 means no log."""
    every = train.get("log_every")
    return max(1, round(total / LOG_ROWS)) if every is None else every


@dataclass(frozen=True)
class Divergence:
    """Why and where a run stopped: the first step whose loss was not finite, or the end of an
    interval whose mean loss exceeded the bound; the last finite loss before it."""

    step: int
    reason: str
    last_finite_loss: float | None


WARP_SUMS = ("count", "displacement", "abs_angle", "angle", "log2_scale", "tx", "ty")
"""What a transformer's sums hold, then the sums of the squares of the last four."""


def _warp_sums(theta: Tensor) -> Tensor:
    """Per-batch sums of a warp's statistics (:data:`WARP_SUMS`, then the squares of angle,
    log2 scale, tx and ty), in few operations: every step pays them."""
    theta = theta.detach().float().reshape(-1, 2, 3)
    identity = torch.eye(2, 3, device=theta.device)  # a fill, not a copy: capturable
    displacement = torch.linalg.vector_norm((theta - identity).flatten(1), dim=1)
    angle = rotation_angle(theta)
    determinant = theta[:, 0, 0] * theta[:, 1, 1] - theta[:, 0, 1] * theta[:, 1, 0]  # no solver: capturable
    log2_scale = 0.5 * torch.log2(determinant.abs())
    values = torch.stack([torch.ones_like(angle), displacement, angle.abs(), angle, log2_scale], dim=1)
    values = torch.cat([values, theta[:, :, 2]], dim=1)
    return torch.cat([values, values[:, 3:].square()], dim=1).sum(0).double()


def _spread(sum_: float, squares: float, count: float) -> float:
    return math.sqrt(max(squares / count - (sum_ / count) ** 2, 0.0))


def _warp_row(label: str, sums: list[float]) -> dict[str, float]:
    count, displacement, abs_angle, angle, scale, tx, ty, angle2, scale2, tx2, ty2 = sums
    count = max(count, 1.0)  # an empty interval reads as zeros
    shift = math.sqrt(_spread(tx, tx2, count) ** 2 + _spread(ty, ty2, count) ** 2)
    values = (
        displacement / count,
        abs_angle / count,
        _spread(angle, angle2, count),
        scale / count,
        _spread(scale, scale2, count),
        shift,
    )
    return {f"{label}_{name}": value for name, value in zip(TRANSFORMER_COLUMNS, values, strict=True)}


def _gradient_norm(parameters: list[Tensor]) -> Tensor:
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros((), dtype=torch.float64, device=parameters[0].device if parameters else None)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))).double()


class TrainingMonitor:
    """Device-side sums of one log interval of a run (see the module docstring).

    ``loss_bound``: a mean loss per output position above it, over an interval, is a
    divergence; None: :data:`DIVERGENCE_FACTOR` × ln(classes).
    """

    def __init__(self, model: STNetwork, device: torch.device, loss_bound: float | None = None) -> None:
        self.localisation = model.localisation_parameters()
        self.classifier = model.classifier_parameters()
        self.loss_bound = loss_bound
        self.sums = torch.zeros(len(_RUN_SUMS), dtype=torch.float64, device=device)
        self.warps: dict[str, Tensor] = {}
        # the step counter, the first non-finite step (-1: none) and the last finite loss
        self.guard = torch.tensor([0.0, -1.0, math.nan], dtype=torch.float64, device=device)
        self.classes = self.positions = 0
        self.gradients_due = True
        """Whether the next eager step's gradient norms are needed (set per step by the trainer)."""

    def start(self, step: int) -> None:
        """Count steps from ``step`` (where a run starts or resumes)."""
        self.guard[0] = step

    def observe(self, loss: Tensor, logits: Tensor, labels: Tensor, thetas: dict[str, Tensor]) -> None:
        """Add a step's loss, errors and warps (device operations only: capturable)."""
        self.classes, self.positions = logits.shape[-1], labels[0].numel()
        loss = loss.detach().double()
        checked = loss  # a NaN warp samples padding: the loss alone may stay finite
        for theta in thetas.values():
            checked = checked + theta.detach().sum()
        finite = torch.isfinite(checked)
        wrong = (logits.detach().argmax(-1) != labels).reshape(len(labels), -1).any(dim=1).sum()
        step, first_bad, last_finite = self.guard.unbind()
        update = torch.stack(
            [
                step + 1,
                torch.where(~finite & (first_bad < 0), step, first_bad),
                torch.where(finite & (first_bad < 0), loss, last_finite),  # frozen once diverged
            ]
        )
        self.guard.copy_(update)
        steps, images = torch.ones_like(loss), torch.full_like(loss, len(labels))
        self.sums[:5].add_(torch.stack([steps, images, loss, wrong.double(), (~finite).double()]))
        for label, theta in thetas.items():
            if label == "input":
                continue  # the composition of the input transformers, each logged by its own label
            sums = _warp_sums(theta)
            if label not in self.warps:
                self.warps[label] = torch.zeros_like(sums)
            self.warps[label].add_(sums)

    def observe_gradients(self) -> None:
        """Keep the gradient norms of the localisation and classifier parameters (after backward):
        a row holds those of its interval's last step, the only one that needs them eagerly
        (:attr:`gradients_due`); a captured CUDA graph computes them every step, to the same values."""
        norms = [_gradient_norm(self.localisation)] if self.localisation else [self.sums[5]]
        self.sums[5:].copy_(torch.stack([*norms, _gradient_norm(self.classifier)]))

    def read(
        self, step: int, epoch: float, lrs: dict[str, float], seconds: float
    ) -> tuple[dict[str, float], Divergence | None]:
        """The row of the interval that ends at ``step`` (its sums are then reset) and whether the
        run diverged in it (synchronises with the device)."""
        run = dict(zip(_RUN_SUMS, self.sums.tolist(), strict=True))
        warps = {label: sums.tolist() for label, sums in self.warps.items()}
        count = max(run["steps"], 1.0)
        row: dict[str, float] = {"step": step, "epoch": epoch, **{f"lr_{k}": v for k, v in lrs.items()}}
        row["loss"] = run["loss"] / count
        row["train_error"] = 100.0 * run["wrong"] / max(run["images"], 1.0)
        for label, sums in warps.items():
            row |= _warp_row(label, sums)
        if self.localisation:
            row["grad_norm_localisation"] = run["grad_localisation"]
        row["grad_norm_classifier"] = run["grad_classifier"]
        row["images_per_second"] = run["images"] / max(seconds, 1e-9)
        self.reset()
        divergence = self.nonfinite()
        bound = self.bound()
        if divergence is None and row["loss"] / max(self.positions, 1) > bound:
            reason = f"the mean loss {row['loss']:.3g} over the interval exceeds the bound {bound:.3g}"
            divergence = Divergence(step, reason, self.last_finite_loss())
        return row, divergence

    def last_finite_loss(self) -> float | None:
        last = self.guard[2].item()  # of the steps whose loss and warps were finite
        return None if math.isnan(last) else last

    def nonfinite(self) -> Divergence | None:
        """A divergence if a step so far had a non-finite loss (synchronises with the device)."""
        first_bad = int(self.guard[1].item())
        if first_bad < 0:
            return None
        return Divergence(first_bad, "the loss or a warp is not finite", self.last_finite_loss())

    def bound(self) -> float:
        """The mean loss per output position above which a run counts as diverged."""
        if self.loss_bound is not None:
            return self.loss_bound
        return DIVERGENCE_FACTOR * math.log(max(self.classes, 2))

    def reset(self) -> None:
        self.sums.zero_()
        for sums in self.warps.values():
            sums.zero_()

    def state_dict(self) -> dict[str, Any]:
        return {
            "sums": self.sums.clone(),
            "warps": {k: v.clone() for k, v in self.warps.items()},
            "guard": self.guard.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums.copy_(state["sums"])
        self.guard.copy_(state["guard"])
        self.warps = {k: v.to(self.sums.device).clone() for k, v in state["warps"].items()}
