"""Figures of what networks do: their alignment of digits, the angles they predict, and the
proof's realigned feature maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from torch import Tensor

from stn.geometry import warp
from stn.invariance import Realignment, transformation
from stn.networks import STNetwork
from stn.report.figures import save_figure
from stn.statistics import deming_slope


@torch.no_grad()
def what_the_network_sees(model: STNetwork, images: Tensor) -> Tensor:
    """The input as the network's transformers align it. For a network that warps feature
    maps, its first predicted matrix applied to the input image instead."""
    result = model.eval().run(images)
    if "input" in result.thetas:
        return result.aligned
    first = next(iter(result.thetas.values()), None)
    return images if first is None else warp(images, first, padding_mode=model.padding_mode)


def alignment_panel(
    axes, digits: Tensor, variants: Sequence[Tensor], models: dict[str, STNetwork], labels: Sequence[str]
) -> None:
    """Rows: the transformed inputs, then each network's view; columns: digit x transformation."""
    columns = [(d, v) for d in range(len(digits)) for v in range(len(variants))]
    rows = [("input", None), *models.items()]
    for r, (name, model) in enumerate(rows):
        for c, (d, v) in enumerate(columns):
            image = variants[v][d : d + 1]
            shown = image if model is None else what_the_network_sees(model, image)
            axis = axes[r][c]
            axis.imshow(shown[0, 0].cpu(), cmap="gray", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if c == 0:
                axis.set_ylabel(name, fontsize=8)
            if r == 0:
                axis.set_title(labels[v], fontsize=7)


def alignment_figure(
    rotation_models: dict[str, STNetwork],
    scale_models: dict[str, STNetwork],
    digits: Tensor,
    angles: Sequence[float],
    scales: Sequence[float],
    scale_canvas: int,
    stem: Path | str,
) -> None:
    """The poster's qualitative figure: digits rotated (left) and scaled (right), and what
    each network's spatial transformer makes of them."""
    images = digits.float()[:, None] / 255.0
    rotated = [
        warp(images, transformation("rotation", a, len(images)), padding_mode="border") for a in angles
    ]
    pad = (scale_canvas - images.shape[-1]) // 2
    canvas = torch.nn.functional.pad(images, (pad, scale_canvas - images.shape[-1] - pad) * 2)
    scaled = [warp(canvas, transformation("scale", s, len(images))) for s in scales]
    rows = 1 + len(rotation_models)
    cols_r, cols_s = len(digits) * len(angles), len(digits) * len(scales)
    figure = plt.figure(figsize=(0.75 * (cols_r + cols_s + 1), 0.8 * rows + 0.6))
    grid = figure.add_gridspec(1, 2, width_ratios=[cols_r, cols_s], wspace=0.08)
    for index, (spec, variants, models, labels, title) in enumerate(
        [
            (grid[0], rotated, rotation_models, [f"{a:g}°" for a in angles], "rotation"),
            (grid[1], scaled, scale_models, [f"×{s:g}" for s in scales], "scale"),
        ]
    ):
        sub = spec.subgridspec(rows, len(digits) * len(variants), wspace=0.05, hspace=0.05)
        axes = [
            [figure.add_subplot(sub[r, c]) for c in range(len(digits) * len(variants))] for r in range(rows)
        ]
        alignment_panel(axes, digits, variants, models, labels)
        if index:
            for row in axes:
                row[0].set_ylabel("")
        axes[0][len(axes[0]) // 2].annotate(
            title, (0.5, 1.6), xycoords="axes fraction", ha="center", fontsize=10
        )
    save_figure(figure, stem)


ANGLE_RANGE = 110.0
ANGLE_BINS = 110


def angle_figure(angles: dict[str, tuple[np.ndarray, np.ndarray]], stem: Path | str) -> None:
    """The authors' angle histogram: per network a 2-D histogram of the applied rotation
    against the rotation its transformer applies, with the orthogonal regression line and
    its slope (-1: every rotation undone; 0: rotations ignored)."""
    figure, axes = plt.subplots(1, len(angles), figsize=(3.0 * len(angles), 3.2), squeeze=False)
    edges = np.linspace(-ANGLE_RANGE, ANGLE_RANGE, ANGLE_BINS + 1)
    for axis, (network, (applied, predicted)) in zip(axes[0], angles.items(), strict=True):
        axis.hist2d(applied, predicted, bins=[edges, edges], cmap="Blues", cmin=1)
        slope = deming_slope(applied, predicted)
        if np.isfinite(slope):
            line = np.array([-ANGLE_RANGE, ANGLE_RANGE])
            axis.plot(line, predicted.mean() + slope * (line - applied.mean()), color="tab:red", linewidth=1)
        axis.plot([-90, 90], [90, -90], color="gray", linestyle=":", linewidth=1)
        axis.set_xlim(-ANGLE_RANGE, ANGLE_RANGE)
        axis.set_ylim(-ANGLE_RANGE, ANGLE_RANGE)
        axis.set_aspect("equal")
        axis.set_title(f"{network}\nslope {slope:+.2f}", fontsize=9)
        axis.set_xlabel("applied angle (°)")
    axes[0][0].set_ylabel("predicted angle (°)")
    figure.tight_layout()
    save_figure(figure, stem)


def proof_figure(realignments: dict[str, dict[float, Realignment]], channels: int, stem: Path | str) -> None:
    """The poster's proof drawing, measured: for each network and rotation, a few channels
    of the depth-1 maps of a digit (original), of the rotated digit warped back by the exact
    inverse rotation (realigned), and their difference; on the right the per-channel
    relative error of aligning the feature maps against aligning the input."""
    rows = [
        (network, angle, r) for network, by_angle in realignments.items() for angle, r in by_angle.items()
    ]
    figure = plt.figure(figsize=(1.0 * 3 * channels + 4.2, 1.15 * len(rows) + 0.8))
    grid = figure.add_gridspec(1, 2, width_ratios=[3 * channels, 4.2], wspace=0.08)
    maps = grid[0].subgridspec(len(rows), 3 * channels, wspace=0.05, hspace=0.3)
    for row, (network, angle, result) in enumerate(rows):
        shown = torch.nan_to_num(result.features_error, nan=-1.0)
        strongest = result.original[0].flatten(1).norm(dim=1).argsort(descending=True)[:channels]
        for c, channel in enumerate(strongest.tolist()):
            original, realigned = result.original[0, channel], result.features[0, channel]
            scale = float(original.abs().max().clamp_min(1e-6))
            for k, (image, title) in enumerate(
                [(original, "original"), (realigned, "realigned"), (realigned - original, "difference")]
            ):
                axis = figure.add_subplot(maps[row, 3 * c + k])
                cmap, low = ("RdBu_r", -scale) if k == 2 else ("gray", 0.0)
                axis.imshow(image.cpu().numpy(), cmap=cmap, vmin=low, vmax=scale)
                axis.set_xticks([])
                axis.set_yticks([])
                if row == 0:
                    axis.set_title(f"ch {channel}\n{title}" if k == 0 else title, fontsize=7)
                if k == 0:
                    axis.set_xlabel(f"rel. err {float(shown[channel]):.2f}", fontsize=6, labelpad=1)
                if c == 0 and k == 0:
                    axis.set_ylabel(f"{network}\n{angle:g}°", fontsize=8)
    errors = figure.add_subplot(grid[1])
    records = [
        {"rows": f"{network} {angle:g}°", "aligned": where, "error": float(value)}
        for network, angle, result in rows
        for where, values in (("feature maps", result.features_error), ("input", result.input_error))
        for value in values
        if not torch.isnan(value)
    ]
    sns.stripplot(pd.DataFrame(records), y="rows", x="error", hue="aligned", dodge=True, size=3, ax=errors)
    errors.set_xlabel("relative error per channel")
    errors.set_ylabel("")
    errors.yaxis.tick_right()
    errors.legend(fontsize=7, title="aligned", title_fontsize=7)
    save_figure(figure, stem)
