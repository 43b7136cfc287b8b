"""Affine warps in the normalised coordinates of ``affine_grid``.

A matrix ``theta`` (B, 2, 3) maps an output location ``p`` to the input location
``theta @ [p, 1]`` that is sampled there, so ``warp(warp(x, a), b)`` equals
``warp(x, compose(a, b))`` up to interpolation and ``warp(warp(x, a), invert(a))``
returns ``x`` away from the borders.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

PaddingMode = Literal["zeros", "border", "reflection"]
ALIGN_CORNERS = False
"""Pinned for every warp: pixel centres at ``(2i + 1) / n - 1``."""


def identity(batch: int, device: torch.device | None = None, dtype=torch.float32) -> Tensor:
    """``batch`` identity matrices of shape (batch, 2, 3)."""
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=device, dtype=dtype)
    return eye.expand(batch, 2, 3).clone()


def to_homogeneous(theta: Tensor) -> Tensor:
    """(B, 2, 3) -> (B, 3, 3) with last row ``[0, 0, 1]``."""
    last = torch.cat([torch.zeros_like(theta[:, :1, :2]), torch.ones_like(theta[:, :1, 2:])], dim=-1)
    return torch.cat([theta, last], dim=1)


def compose(first: Tensor, second: Tensor) -> Tensor:
    """The warp that applies ``first`` and then ``second``: ``first @ second`` as 3x3."""
    return (to_homogeneous(first) @ to_homogeneous(second))[:, :2, :]


def inverse_2x2(matrix: Tensor) -> Tensor:
    """Inverses of (..., 2, 2) matrices in closed form: no solver, whose error check would
    synchronise a CUDA device (and so break CUDA-graph capture)."""
    (a, b), (c, d) = matrix[..., 0, :].unbind(-1), matrix[..., 1, :].unbind(-1)
    rows = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2)
    return rows / (a * d - b * c)[..., None, None]


def invert(theta: Tensor) -> Tensor:
    """The inverse warp of ``theta``: ``[A | t]`` -> ``[A^-1 | -A^-1 t]``."""
    linear = inverse_2x2(theta[..., :2])
    return torch.cat([linear, -linear @ theta[..., 2:]], dim=-1)


def affine_grid(theta: Tensor, height: int, width: int) -> Tensor:
    """The sampling grid (B, H, W, 2) of ``theta``, as ``F.affine_grid`` with ``ALIGN_CORNERS``.

    Built by broadcasting, in four operations: much faster than ``F.affine_grid``'s batched
    matmul on CPU, and few kernels in a captured CUDA graph.
    """
    like = {"device": theta.device, "dtype": theta.dtype}
    ys = torch.linspace(1 / height - 1, 1 - 1 / height, height, **like)  # pixel centres (2i + 1) / n - 1
    xs = torch.linspace(1 / width - 1, 1 - 1 / width, width, **like)
    t = theta[:, :, :, None, None]
    grid = torch.addcmul(torch.addcmul(t[:, :, 2], t[:, :, 1], ys[:, None]), t[:, :, 0], xs)
    return grid.permute(0, 2, 3, 1)


GRID_BOUND = 2.0
"""On the CPU, grid coordinates are clamped to ±this before sampling (NaN to the bound): the CPU
``grid_sample`` backward crashes the process on a non-finite or huge grid (a diverging
transformer's). With zeros or border padding, every point beyond ±2 samples the padding with a
zero gradient either way, so a finite run is unchanged, bit for bit."""


def sample(image: Tensor, grid: Tensor, padding_mode: PaddingMode = "zeros") -> Tensor:
    """Bilinear ``grid_sample`` with the pinned ``ALIGN_CORNERS`` (a guarded grid on the CPU:
    :data:`GRID_BOUND`)."""
    if grid.device.type == "cpu" and padding_mode != "reflection":
        grid = torch.nan_to_num(grid, nan=GRID_BOUND).clamp(-GRID_BOUND, GRID_BOUND)
    return F.grid_sample(
        image,
        grid.to(image.dtype),
        mode="bilinear",
        padding_mode=padding_mode,
        align_corners=ALIGN_CORNERS,
    )


def warp(
    image: Tensor,
    theta: Tensor,
    size: tuple[int, int] | None = None,
    padding_mode: PaddingMode = "zeros",
) -> Tensor:
    """Bilinearly resample ``image`` (B, C, H, W) at the grid ``theta`` generates.

    ``size`` is the output (H, W); by default the input's.
    """
    out_h, out_w = size or image.shape[-2:]
    return sample(image, affine_grid(theta.to(image.dtype), out_h, out_w), padding_mode)


def affine_matrix(
    angle_deg: Tensor | float = 0.0,
    scale_x: Tensor | float = 1.0,
    scale_y: Tensor | float | None = None,
    shear: Tensor | float = 0.0,
    tx: Tensor | float = 0.0,
    ty: Tensor | float = 0.0,
    device: torch.device | None = None,
) -> Tensor:
    """``theta = [R(angle) @ [[sx, shear * sy], [0, sy]] | (tx, ty)]``, batched by broadcasting.

    ``scale_y`` defaults to ``scale_x`` (isotropic). The inverse of :func:`decompose`.
    """
    values = [angle_deg, scale_x, scale_x if scale_y is None else scale_y, shear, tx, ty]
    # numbers become device tensors by a fill, not a host-to-device copy (CUDA graphs forbid those)
    tensors = [
        torch.full((1,), float(v), dtype=torch.float32, device=device)
        if isinstance(v, int | float)
        else torch.as_tensor(v, dtype=torch.float32, device=device).reshape(-1)
        for v in values
    ]
    angle, sx, sy, sh, x, y = torch.broadcast_tensors(*tensors)
    rad = torch.deg2rad(angle)
    cos, sin = torch.cos(rad), torch.sin(rad)
    row0 = torch.stack([cos * sx, cos * sh * sy - sin * sy, x], dim=-1)
    row1 = torch.stack([sin * sx, sin * sh * sy + cos * sy, y], dim=-1)
    return torch.stack([row0, row1], dim=-2)


def similarity_matrix(factor: Tensor, offset: Tensor) -> Tensor:
    """``theta`` (B, 2, 3) of the similarity ``p -> factor * p + offset`` of the plane x + iy,
    from complex ``factor`` and ``offset`` (B,): ``[[a, -b, u], [b, a, v]]`` for
    ``factor = a + ib`` and ``offset = u + iv``."""
    (a, b), (u, v) = torch.view_as_real(factor).unbind(-1), torch.view_as_real(offset).unbind(-1)
    return torch.stack([a, -b, u, b, a, v], dim=-1).view(-1, 2, 3)


def decompose(theta: Tensor) -> dict[str, Tensor]:
    """Read rotation (degrees), scales, shear and translation out of ``theta`` (B, 2, 3).

    Uses ``A = R(angle) @ [[sx, shear * sy], [0, sy]]`` (a QR decomposition with a
    positive ``sx``); a reflection shows as a negative ``sy``. The rotation equals
    ``-atan2(a01 - a10, a00 + a11)`` only for similarity matrices; for general
    matrices it is the angle of the first column.
    """
    a = theta[:, :, :2]
    sx = torch.linalg.vector_norm(a[:, :, 0], dim=-1)
    angle = torch.atan2(a[:, 1, 0], a[:, 0, 0])
    cos, sin = torch.cos(angle), torch.sin(angle)
    # R(-angle) @ A = [[sx, m01], [0, sy]]
    m01 = cos * a[:, 0, 1] + sin * a[:, 1, 1]
    sy = -sin * a[:, 0, 1] + cos * a[:, 1, 1]
    return {
        "angle": torch.rad2deg(angle),
        "scale_x": sx,
        "scale_y": sy,
        "shear": m01 / sy,
        "tx": theta[:, 0, 2],
        "ty": theta[:, 1, 2],
    }


def rotation_angle(theta: Tensor) -> Tensor:
    """The rotation (degrees) of the closest similarity: ``atan2(a10 - a01, a00 + a11)``."""
    return torch.rad2deg(torch.atan2(theta[:, 1, 0] - theta[:, 0, 1], theta[:, 0, 0] + theta[:, 1, 1]))


def in_frame(theta: Tensor, frame: tuple[float, float]) -> Tensor:
    """A warp ``theta`` (B, 2, 3) of the input expressed in the coordinates of a map whose
    ``frame`` (scale, offset) places it in the input (``p -> scale * p + offset`` on both axes):
    ``frame^-1 @ theta @ frame``, in closed form. The linear part is unchanged (rotations and
    scales about the centre of a centred map); the translation becomes
    ``(A (offset, offset) + t - offset) / scale``, growing as the map covers less of the input.
    """
    scale, offset = frame
    linear, shift = theta[..., :2], theta[..., 2:]
    if offset:
        shift = linear.sum(-1, keepdim=True) * offset + (shift - offset)
    return torch.cat([linear, shift / scale], dim=-1)
