"""Tables and figures from the metrics of many runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
import yaml
from torch import Tensor

from stn.geometry import warp
from stn.invariance import transformation
from stn.io import atomic_write
from stn.networks import STNetwork


@cache
def paper_results() -> dict[str, dict[str, dict[str, float]]]:
    """The errors the paper reports, by table, network and column."""
    return yaml.safe_load(resources.files("stn").joinpath("paper_results.yaml").read_text())


def load_metrics(paths: Sequence[Path | str]) -> pd.DataFrame:
    """One row per run: network, task, seed, test_error and the training statistics."""
    rows = []
    for path in paths:
        metrics = json.loads(Path(path).read_text())
        rows.append({k: v for k, v in metrics.items() if k != "config"})
    return pd.DataFrame(rows)


def summary_table(
    metrics: pd.DataFrame, networks: Sequence[str], tasks: Sequence[str], paper: str
) -> pd.DataFrame:
    """Per network (rows) and task: mean error, its standard deviation over seeds, the
    number of seeds, the paper's error, our mean minus the paper's, and the mean share
    of an applied rotation that the transformer undoes (see :func:`stn.invariance.rotation_undone`)."""
    reported = paper_results().get(paper, {})
    grouped = metrics.groupby(["network", "task"])
    stats = grouped["test_error"].agg(["mean", "std", "count"])
    undone = grouped["rotation_undone"].mean() if "rotation_undone" in metrics else pd.Series()
    rows = []
    for network in networks:
        row: dict[str, object] = {"network": network}
        for task in tasks:
            mean, std, count = stats.loc[(network, task)] if (network, task) in stats.index else (None,) * 3
            theirs = reported.get(network, {}).get(task)
            row |= {
                f"{task}_mean": mean,
                f"{task}_std": std,
                f"{task}_seeds": count,
                f"{task}_paper": theirs,
                f"{task}_diff": None if theirs is None or mean is None else mean - theirs,
                f"{task}_undone": undone.get((network, task)),
            }
        rows.append(row)
    return pd.DataFrame(rows).set_index("network")


def _cell(value: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if value is None or pd.isna(value) else fmt.format(value)


def format_table(table: pd.DataFrame, tasks: Sequence[str], latex: bool = False) -> pd.DataFrame:
    """Human-readable cells: ``mean ± std (n)``, the paper's value, the difference and,
    for tasks with rotations, the share of rotation undone."""
    pm = r"$\pm$" if latex else "±"
    out = {}
    for task in tasks:
        out[f"{task} ours"] = [
            f"{_cell(m)} {pm} {_cell(s)} (n={_cell(n, '{:.0f}')})"
            for m, s, n in zip(
                table[f"{task}_mean"], table[f"{task}_std"], table[f"{task}_seeds"], strict=True
            )
        ]
        out[f"{task} paper"] = [_cell(v) for v in table[f"{task}_paper"]]
        out[f"{task} diff"] = [_cell(v, "{:+.2f}") for v in table[f"{task}_diff"]]
        if table[f"{task}_undone"].notna().any():
            out[f"{task} undone"] = [_cell(v) for v in table[f"{task}_undone"]]
    return pd.DataFrame(out, index=table.index)


def write_table(table: pd.DataFrame, tasks: Sequence[str], stem: Path | str, caption: str) -> None:
    """Write ``stem``.csv (numbers), .md and .tex (booktabs)."""
    stem = Path(stem)
    atomic_write(stem.with_suffix(".csv"), lambda tmp: table.to_csv(tmp, float_format="%.4f"))
    markdown = format_table(table, tasks).to_markdown(disable_numparse=True)
    atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text(f"{caption}\n\n{markdown}\n"))
    latex = format_table(table, tasks, latex=True)
    columns = "l" + "r" * len(latex.columns)
    header = " & ".join(["Network", *(c.replace("diff", r"$\Delta$") for c in latex.columns)])
    body = "\n".join(
        " & ".join([name, *row]) + r" \\"
        for name, row in zip(latex.index, latex.values.tolist(), strict=True)
    )
    tex = "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            f"\\caption{{{caption}}}",
            f"\\begin{{tabular}}{{{columns}}}",
            r"\toprule",
            header + r" \\",
            r"\midrule",
            body,
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
            "",
        ]
    )
    atomic_write(stem.with_suffix(".tex"), lambda tmp: tmp.write_text(tex))


def save_figure(figure: plt.Figure, stem: Path | str) -> None:
    """Save ``stem``.png and .pdf atomically."""
    for suffix in (".png", ".pdf"):
        path = Path(stem).with_suffix(suffix)
        atomic_write(
            path, lambda tmp, s=suffix: figure.savefig(tmp, format=s[1:], dpi=150, bbox_inches="tight")
        )
    plt.close(figure)


def error_figure(
    metrics: pd.DataFrame,
    networks: Sequence[str],
    tasks: Sequence[str],
    stem: Path | str,
    paper: str | None = None,
) -> None:
    """Test error per network and task: bars for the mean, a dot per seed, a cross for the paper."""
    data = metrics[metrics["network"].isin(networks) & metrics["task"].isin(tasks)]
    figure, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.4), squeeze=False)
    reported = paper_results().get(paper or "", {})
    for axis, task in zip(axes[0], tasks, strict=True):
        subset = data[data["task"] == task]
        sns.barplot(subset, x="network", y="test_error", order=networks, errorbar=None, alpha=0.5, ax=axis)
        sns.stripplot(subset, x="network", y="test_error", order=networks, color="black", size=4, ax=axis)
        paper_values = [reported.get(n, {}).get(task) for n in networks]
        positions = [i for i, v in enumerate(paper_values) if v is not None]
        if positions:
            axis.scatter(
                positions,
                [paper_values[i] for i in positions],
                marker="x",
                color="tab:red",
                label="paper",
                zorder=3,
            )
            axis.legend(loc="upper right", fontsize=7)
        axis.set_title(task)
        axis.set_xlabel("")
        axis.set_ylabel("test error (%)")
        axis.tick_params(axis="x", rotation=45)
    figure.tight_layout()
    save_figure(figure, stem)


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
