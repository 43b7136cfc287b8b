"""The Plankton task: the authors' augmentation of the prepared squares.

The authors' ranges (``config/plankton.yaml``): rotation U(-180, 180) degrees, shifts U(-10, 10)
pixels of 95, scales 2^U(-log2 1.3, log2 1.3), shear U(-20, 20) degrees, horizontal flips with
probability 0.5. Each image is flipped, sheared, scaled, rotated about its centre and translated in
one bilinear warp with zero fill at its stored size, then resized to the network's canvas. The test
set is not augmented.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from stn.data.base import Task
from stn.geometry import affine_matrix, invert, warp

IMAGE_SIZE = 95
"""The side of the prepared squares and of the network's inputs, as the authors'."""
_DRAWS = ("angle", "scale", "shear", "tx", "ty", "flip")


@dataclass(frozen=True)
class PlanktonTask(Task):
    """The Plankton task: each image flipped horizontally (with probability ``flip``), sheared by
    U(-shear, shear) degrees, scaled by 2^U(lo, hi) (``log2_scale``), rotated about its centre by
    U(-rotation, rotation) degrees and shifted by U(-translation, translation) pixels of the canvas
    per axis, in one bilinear warp with zero fill at the images' stored size, then resized to
    ``canvas`` (antialiased bilinear) where that differs. The test set is not augmented."""

    name: str = "Plankton"
    canvas: int = IMAGE_SIZE
    rotation: float = 0.0
    log2_scale: tuple[float, float] = (0.0, 0.0)
    translation: float = 0.0
    shear: float = 0.0
    flip: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.log2_scale
        checks = {
            "canvas must be an integer >= 8": isinstance(self.canvas, int) and self.canvas >= 8,
            "rotation must be >= 0": self.rotation >= 0,
            "log2_scale must be [lo, hi] with lo <= hi": lo <= hi,
            "translation must be >= 0": self.translation >= 0,
            "shear must lie in [0, 90) degrees": 0 <= self.shear < 90,
            "flip must be a probability in [0, 1]": 0 <= self.flip <= 1,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"task {self.name!r}: " + "; ".join(failed))

    def parameters(self, draws: dict[str, Tensor]) -> dict[str, Tensor]:
        """The transformation of each image from its uniform ``draws``: ``angle`` and ``shear``
        (degrees), ``scale``, ``tx`` and ``ty`` (normalised: pixels * 2 / canvas), ``flip`` (0. or 1.)."""
        shift = self.translation * 2.0 / self.canvas
        lo, hi = self.log2_scale
        return {
            "angle": self.rotation * (2.0 * draws["angle"] - 1.0),
            "scale": 2.0 ** (lo + (hi - lo) * draws["scale"]),
            "shear": self.shear * (2.0 * draws["shear"] - 1.0),
            "tx": shift * (2.0 * draws["tx"] - 1.0),
            "ty": shift * (2.0 * draws["ty"] - 1.0),
            "flip": (draws["flip"] < self.flip).float(),
        }

    def _to_canvas(self, images: Tensor) -> Tensor:
        """Float images (B, 1, S, S) resized to the canvas where S differs from it."""
        if images.shape[-1] == self.canvas:
            return images
        size = (self.canvas, self.canvas)
        return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)

    # the task interface of stn.data.base
    def draw(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> dict[str, Tensor]:
        """Uniform [0, 1) draws, one (B,) tensor per parameter (see :meth:`parameters`)."""
        return {key: torch.rand((batch,), generator=generator, device=device) for key in _DRAWS}

    def render(self, images: Tensor, draws: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Float inputs (B, 1, canvas, canvas) in [0, 1] from uint8 images (B, S, S), and the
        parameters (:meth:`parameters`). No host synchronisation (CUDA graphs)."""
        params = self.parameters(draws)
        warped = warp(images[:, None].float().div_(255.0), invert(self.undo(params)))
        return self._to_canvas(warped).clamp_(0.0, 1.0), params

    def canonical(self, images: Tensor) -> Tensor:
        """The uint8 images (B, S, S) as float inputs (B, 1, canvas, canvas) in [0, 1], unaugmented:
        what :meth:`undo` returns a rendered image to."""
        return self._to_canvas(images[:, None].float().div_(255.0)).clamp_(0.0, 1.0)

    def undo(self, params: dict[str, Tensor]) -> Tensor:
        """The warp (B, 2, 3) of a rendered image that returns the unaugmented one: the forward
        map of the content, ``[R(-angle) scale [[1, tan shear], [0, 1]] diag(±1, 1) | (tx, ty)]``
        (the rendering samples the image at its inverse), a reflection where flipped."""
        angle = params["angle"]
        shear = torch.tan(torch.deg2rad(params["shear"]))
        forward = affine_matrix(-angle, params["scale"], shear=shear, tx=params["tx"], ty=params["ty"])
        mirror = torch.stack([1.0 - 2.0 * params["flip"], torch.ones_like(angle)], dim=-1)
        return torch.cat([forward[:, :, :2] * mirror[:, None, :], forward[:, :, 2:]], dim=-1)

    def test_set(self, images: Tensor, labels: Tensor, seed: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """The test images as the network reads them, unaugmented: uint8 (N, 1, canvas, canvas)
        (resized and rounded where the stored size differs), int64 labels and neutral parameters
        (:meth:`undo` gives identities). Deterministic: ``seed`` is unused."""
        n = len(images)
        if images.shape[-1] == self.canvas:
            inputs = images[:, None].clone()
        else:
            inputs = torch.cat(
                [
                    self._to_canvas(batch[:, None].float() / 255.0).mul_(255.0).round_().to(torch.uint8)
                    for batch in images.split(1024)
                ]
            )
        neutral = {key: torch.full((n,), float(key == "scale"), device=images.device) for key in _DRAWS}
        return inputs, labels.long(), neutral
