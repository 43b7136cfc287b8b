"""The transformed-MNIST tasks R, S and T: batched, on-device augmentation.

One mechanism for every task: the digit (shifted by whole pixels) and clutter
patches cut from other digits are sprites, each resampled through the same random
rotation and scale into a window of the output canvas (pasted as it is where a task
only moves) and max-combined there. Everything is a tensor operation on the digits'
device, the same few whatever the batch (a captured CUDA graph replays one kernel
per operation); there is no per-sample Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from stn.data.base import Task
from stn.geometry import sample, similarity_matrix


@dataclass(frozen=True)
class MNISTTask(Task):
    """A transformed-MNIST task.

    canvas: output width in pixels. rotation: angles drawn from U(-rotation, rotation)
    degrees. log2_scale: scales 2^U(lo, hi). translation: shifts U{-t..t} pixels per
    axis. clutter: number of ``clutter_size`` patches of other digits, scaled with
    the digit. test_repeats: augmented copies of each test digit in the fixed test set.
    """

    name: str
    canvas: int = 28
    rotation: float = 0.0
    log2_scale: tuple[float, float] = (0.0, 0.0)
    translation: int = 0
    clutter: int = 0
    clutter_size: int = 6
    test_repeats: int = 1
    digit_size: int = field(default=28, repr=False)

    def __post_init__(self) -> None:
        lo, hi = self.log2_scale
        checks = {
            "canvas must be at least the digit size (28)": self.canvas >= self.digit_size,
            "rotation must be >= 0": self.rotation >= 0,
            "log2_scale must be [lo, hi] with lo <= hi": lo <= hi,
            "translation must be >= 0": self.translation >= 0,
            "clutter must be >= 0": self.clutter >= 0,
            "clutter_size must lie in [1, 28]": 1 <= self.clutter_size <= self.digit_size,
            "test_repeats must be >= 1": self.test_repeats >= 1,
            "the shifted digit must fit the canvas (canvas >= 28 + 2 * translation)": (
                self.canvas >= self.digit_size + 2 * self.translation
            ),
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"task {self.name!r}: " + "; ".join(failed))

    # the task interface of stn.data.base
    def draw(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> dict[str, Tensor]:
        return draw_augmentation(batch, self, generator, device)

    def render(self, images: Tensor, draws: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        return render_augmentation(images, draws, self)

    def undo(self, params: dict[str, Tensor]) -> Tensor:
        return undo_matrix(params, self)

    def test_set(self, images: Tensor, labels: Tensor, seed: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        return make_test_set(images, labels, self, seed)

    def canonical(self, images: Tensor) -> Tensor:
        """The digits centred on the canvas, untransformed and without clutter."""
        batch, device = len(images), images.device
        still = {
            "shift": torch.zeros((batch, 2), dtype=torch.long, device=device),
            "angle": torch.zeros((batch,), device=device),
            "scale": torch.zeros((batch,), device=device),
        }
        return render_augmentation(images, still, MNISTTask("canonical", canvas=self.canvas))[0]


PAPER_TASKS = {
    "R": MNISTTask("R", canvas=28, rotation=90.0),
    "S": MNISTTask("S", canvas=112, log2_scale=(-1.0, 2.0), clutter=6),
    "T": MNISTTask("T", canvas=60, translation=16, clutter=6),
}


def paste_max(canvas: Tensor, patches: Tensor, top: Tensor, left: Tensor) -> None:
    """Max-combine ``patches`` (B, K, h, w) into ``canvas`` (B, H, W) in place at (top, left) (B, K)."""
    b, _, h, w = patches.shape
    width = canvas.shape[-1]
    rows = top.unsqueeze(-1) + torch.arange(h, device=canvas.device)
    cols = left.unsqueeze(-1) + torch.arange(w, device=canvas.device)
    index = rows.unsqueeze(-1) * width + cols.unsqueeze(-2)
    canvas.view(b, -1).scatter_reduce_(1, index.reshape(b, -1), patches.reshape(b, -1), "amax")


def _interpolation_weights(source: Tensor, length: int) -> Tensor:
    """Bilinear weights (..., n, length) of sampling a line of ``length`` pixels at ``source``
    (..., n) pixel coordinates, zero outside: one row per output pixel."""
    taps = torch.arange(length, device=source.device, dtype=source.dtype)
    return (1.0 - (source.unsqueeze(-1) - taps).abs_()).clamp_(min=0.0)


def _as_complex(points: Tensor) -> Tensor:
    """Points (..., 2) as (x, y) -> complex numbers x + iy (...)."""
    return torch.complex(points[..., 0], points[..., 1])


def render_sprites(
    sprites: Tensor, centres: Tensor, sampling: Tensor, size: int, window: int
) -> tuple[Tensor, Tensor]:
    """Render square sprites (B, K, s, s) transformed onto a ``size`` wide canvas, each into a
    ``window`` wide square; returns the windows (B, K, W, W) and their top-left corners
    (B, K, 2) as (x, y) canvas pixels.

    ``centres`` (B, K, 2) are the sprites' centres (x, y) in pixels from the canvas centre
    before the transformation. ``sampling`` (B,) is the similarity that maps an output
    offset to a pre-transformation offset, as a factor: complex ``e^{i angle} / scale``
    (a rotation of the plane x + iy, and a scaling), or real ``1 / scale`` (a scaling
    alone). Each sprite is resampled bilinearly (zero outside) into a ``window`` wide
    square around its transformed centre: only that window is computed; :func:`paste_max`
    puts them on the canvas. A real ``sampling`` is resampled separably, as two small
    matrix products, instead of through ``grid_sample``.
    """
    b, k, h, w = sprites.shape
    if h != w:
        raise ValueError(f"sprites must be square, got {h}x{w}")
    # where each centre lands on the output canvas, and the window's corner there
    if sampling.is_complex():
        centres_xy = _as_complex(centres)
        landed = torch.view_as_real(centres_xy / sampling[:, None])
    else:
        landed = centres / sampling[:, None, None]
    corner = (landed + (size - window) / 2).round_().clamp_(0, size - window)
    # output offsets (from the canvas centre) of the window's pixel centres: (B, K, 2, W) as x, y
    steps = torch.arange(window, device=sprites.device, dtype=sprites.dtype) + (0.5 - size / 2)
    out = corner.unsqueeze(-1) + steps
    if sampling.is_complex():
        points = torch.complex(out[:, :, 0, None, :], out[:, :, 1, :, None])  # (B, K, W, W): x + iy
        source = sampling[:, None, None, None] * points - centres_xy[..., None, None]
        grid = torch.view_as_real(source).div_(w / 2).view(b * k, window, window, 2)  # normalised
        drawn = sample(sprites.reshape(b * k, 1, h, w), grid).view(b, k, window, window)
    else:
        # sprite pixel coordinates (pixel j centred at j) of each window column (x) and row (y)
        source = torch.addcmul(((w - 1) / 2 - centres).unsqueeze(-1), sampling[:, None, None, None], out)
        weights = _interpolation_weights(source, w)  # (B, K, 2, W, w)
        drawn = weights[:, :, 1] @ sprites @ weights[:, :, 0].transpose(-1, -2)
    return drawn, corner.long()


def _on_pixel_grid(centre: Tensor, sprite: int, canvas: int) -> Tensor:
    """Round a centre so an untransformed sprite's pixels fall on the canvas's pixels."""
    offset = (canvas - sprite) / 2
    return (centre + offset).round_() - offset


def _between(unit: Tensor, low: float, high: float) -> Tensor:
    """Uniform draws in [0, 1) moved to [low, high) (all ``low`` when ``low == high``)."""
    return unit * (high - low) + low if high > low else torch.full_like(unit, low)


def draw_augmentation(
    batch: int, task: MNISTTask, generator: torch.Generator | None = None, device: torch.device | None = None
) -> dict[str, Tensor]:
    """The random numbers :func:`render_augmentation` turns into ``batch`` transformations:
    every draw of :func:`augment`, in its order, and nothing else. Separate so a captured
    CUDA graph can render while the draws stay per-step seeded outside it."""
    gen, t = generator, task.translation
    draws = {
        "shift": torch.randint(-t, t + 1, (batch, 2), generator=gen, device=device),
        "angle": torch.rand((batch,), generator=gen, device=device),
        "scale": torch.rand((batch,), generator=gen, device=device),
    }
    if task.clutter:
        n = task.clutter
        crop_range = task.digit_size - task.clutter_size + 1
        draws["others"] = torch.randint(1, max(batch, 2), (batch, n), generator=gen, device=device)
        draws["crop"] = torch.randint(0, crop_range, (batch, n, 2), generator=gen, device=device)
        draws["place"] = torch.rand((batch, n, 2), generator=gen, device=device)
    return draws


def render_augmentation(
    digits: Tensor, draws: dict[str, Tensor], task: MNISTTask
) -> tuple[Tensor, dict[str, Tensor]]:
    """The images and parameters of :func:`augment` from its ``draws`` (:func:`draw_augmentation`).

    Few device operations (one CUDA kernel each, so few kernels in a captured training step):
    a similarity is one complex factor, and constants stay Python numbers."""
    device = digits.device
    images = digits * (1 / 255) if digits.dtype == torch.uint8 else digits.float()
    b, size, canvas_size = images.shape[0], images.shape[-1], task.canvas

    shift = draws["shift"].float()
    angle = _between(draws["angle"], -task.rotation, task.rotation)
    scale = torch.exp2(_between(draws["scale"], *task.log2_scale))
    inverse_scale = scale.reciprocal()
    sampling = torch.polar(inverse_scale, angle * (math.pi / 180)) if task.rotation else inverse_scale
    growth = 2.0 ** task.log2_scale[1] * (math.sqrt(2) if task.rotation else 1.0)
    moves_only = not task.rotation and task.log2_scale[0] == task.log2_scale[1] == 0

    def draw(sprites: Tensor, centres: Tensor, canvas: Tensor | None) -> Tensor:
        if moves_only:  # each sprite is pasted as it is, on whole pixels (centres are on the grid)
            drawn, corner = sprites, (centres + (canvas_size - sprites.shape[-1]) / 2).long()
        else:
            window = min(canvas_size, math.ceil(sprites.shape[-1] * growth) + 2)
            drawn, corner = render_sprites(sprites, centres, sampling, canvas_size, window)
            if canvas is None and window == canvas_size:
                return drawn[:, 0]  # one sprite covering the whole canvas: it is the canvas
        if canvas is None:
            canvas = torch.zeros(b, canvas_size, canvas_size, device=device)
        paste_max(canvas, drawn, corner[..., 1], corner[..., 0])
        return canvas

    canvas = draw(images[:, None], _on_pixel_grid(shift, size, canvas_size)[:, None], None)

    if task.clutter:
        k = task.clutter_size
        others = (torch.arange(b, device=device)[:, None] + draws["others"]) % b
        crop, pixels = draws["crop"], torch.arange(k, device=device)
        rows = (crop[..., 0, None] + pixels).unsqueeze(-1)
        cols = (crop[..., 1, None] + pixels).unsqueeze(-2)
        patches = images[others[..., None, None], rows, cols]
        # clutter lies uniformly over what stays visible of the untransformed plane
        reach = (inverse_scale * (canvas_size / 2) - k / 2).clamp_(min=0)[:, None, None]
        centres = (draws["place"] * 2 - 1) * reach
        canvas = draw(patches, _on_pixel_grid(centres, k, canvas_size), canvas)

    return canvas[:, None].clamp_(0.0, 1.0), {"angle": angle, "scale": scale, "shift": shift}


def augment(
    digits: Tensor, task: MNISTTask, generator: torch.Generator | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """Transform a batch of digits (B, 28, 28), uint8 or float in [0, 1].

    Returns images (B, 1, canvas, canvas) in [0, 1] and the drawn parameters
    (``angle`` degrees, ``scale``, ``shift`` pixels (B, 2) as (dx, dy)). The digit
    is shifted, then rotated and scaled about the canvas centre.
    """
    draws = draw_augmentation(digits.shape[0], task, generator, digits.device)
    return render_augmentation(digits, draws, task)


def undo_matrix(params: dict[str, Tensor], task: MNISTTask) -> Tensor:
    """The warp (B, 2, 3) of an augmented image that returns its canonical digit: the exact
    inverse of the transformation :func:`augment` drew (``params``), in the canvas's
    normalised coordinates. The canonical digit is the untransformed one, centred as
    :func:`augment` places it with no shift."""
    size, canvas = task.digit_size, task.canvas
    centre = round((canvas - size) / 2) - (canvas - size) / 2  # _on_pixel_grid of no shift
    shift = (_on_pixel_grid(params["shift"], size, canvas) - centre) * (2.0 / canvas)
    # the augmented image samples the canonical one at  e^{i angle} p / scale - shift, so the
    # canonical one samples the augmented one at  scale e^{-i angle} (p + shift)
    undo = torch.polar(params["scale"], params["angle"] * (-math.pi / 180))
    return similarity_matrix(undo, undo * _as_complex(shift))


def make_test_set(
    images: Tensor, labels: Tensor, task: MNISTTask, seed: int
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """The fixed test set of a task: ``test_repeats`` augmented copies of each digit, as uint8,
    their labels, and the drawn parameters of :func:`augment` (``angle``, ``scale``, ``shift``)."""
    generator = torch.Generator().manual_seed(seed)
    digits = images.repeat(task.test_repeats, 1, 1)
    out, drawn = [], []
    for start in range(0, len(digits), 1024):
        batch, params = augment(digits[start : start + 1024], task, generator)
        out.append((batch * 255).round().to(torch.uint8))
        drawn.append(params)
    params = {key: torch.cat([p[key] for p in drawn]) for key in drawn[0]}
    return torch.cat(out), labels.repeat(task.test_repeats), params
