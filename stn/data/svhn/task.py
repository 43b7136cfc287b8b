"""The SVHN multi-digit task of the prepared 64x64 crops (:mod:`stn.data.svhn.prepare`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from stn.data.base import Task
from stn.data.svhn.crops import CROP_SIZE


@dataclass(frozen=True)
class SVHNTask(Task):
    """The SVHN multi-digit task: the prepared 64x64 crops, as they are or randomly cropped.

    random_crop: ``None`` (the default, as the authors trained: the whole 64x64 crop), or the side
    ``S`` of a square crop: training draws a random ``S x S`` window of each 64x64 image (offsets
    uniform over the whole image, per image and step), the test set takes the centre window. The
    network then reads ``S x S`` inputs, so the run's ``task.canvas`` must be ``S``. Goodfellow et
    al. (2013) trained on random 54x54 crops; the STN authors did not, and their network (four
    2x2 poolings, Torch) needs sides divisible by 16. Our ``svhn`` backbone floors its poolings, so
    it builds for any side (54 -> 27 -> 13 -> 6 -> 3), but its last maps then drop edge pixels:
    use 48 or 64 where a side divisible by 16 matters.

    There is no pose: :meth:`undo` returns ``None``, and an oracle transformer, which needs one,
    refuses to run (:class:`stn.networks` says so). ``rotation`` is 0: no rotation measures.
    """

    name: str = "SVHN"
    rotation: float = 0.0
    random_crop: int | None = None
    size: int = field(default=CROP_SIZE, repr=False)

    def __post_init__(self) -> None:
        crop = self.random_crop
        if crop is not None and (
            isinstance(crop, bool) or not isinstance(crop, int) or not 1 <= crop <= self.size
        ):
            raise ValueError(
                f"task {self.name!r}: random_crop must be null or a side in [1, {self.size}], got {crop!r}"
            )
        if self.rotation != 0:
            raise ValueError(f"task {self.name!r}: SVHN has no rotation augmentation (rotation must be 0)")

    @property
    def canvas(self) -> int:
        """The side of the network's inputs."""
        return self.size if self.random_crop is None else self.random_crop

    # the task interface of stn.data.base
    def draw(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> dict[str, Tensor]:
        """Nothing without a random crop; else each image's crop offset (B, 2) as (row, column)."""
        if self.random_crop is None:
            return {}
        span = self.size - self.random_crop + 1
        return {"offset": torch.randint(0, span, (batch, 2), generator=generator, device=device)}

    def render(self, images: Tensor, draws: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Float inputs (B, 3, S, S) in [0, 1] from uint8 crops (B, 64, 64, 3); the drawn parameters
        (``offset`` where cropping, else none). No host synchronisation (CUDA graphs)."""
        if self.random_crop is None:
            return images.permute(0, 3, 1, 2).float().div_(255.0), {}
        offset = draws["offset"]
        steps = torch.arange(self.random_crop, device=images.device)
        rows = (offset[:, 0, None] + steps)[:, :, None]  # (B, S, 1)
        cols = (offset[:, 1, None] + steps)[:, None, :]  # (B, 1, S)
        batch = torch.arange(len(images), device=images.device)[:, None, None]
        window = images[batch, rows, cols]  # (B, S, S, 3)
        return window.permute(0, 3, 1, 2).float().div_(255.0), {"offset": offset}

    def undo(self, params: dict[str, Tensor]) -> None:
        """No pose: ``None`` (see the class)."""
        return None

    def test_set(self, images: Tensor, labels: Tensor, seed: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Every test crop as the network reads it, uint8 (N, 3, S, S) (the centre window with a
        random crop), its labels (N, 5) and no parameters. Deterministic: ``seed`` is unused."""
        start = (self.size - self.canvas) // 2
        window = images[:, start : start + self.canvas, start : start + self.canvas]
        return window.permute(0, 3, 1, 2).contiguous(), labels.long().contiguous(), {}
