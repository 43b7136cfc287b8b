"""Tables and figures from the metrics of many runs."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import yaml
from torch import Tensor

from stn.geometry import warp
from stn.invariance import Realignment, transformation
from stn.io import atomic_write
from stn.networks import STNetwork
from stn.statistics import deming_slope, paired_difference, t_interval
from stn.variants import parse_network_name


@cache
def paper_results() -> dict[str, dict[str, dict[str, float]]]:
    """The errors the paper reports, by table, network and column."""
    return yaml.safe_load(resources.files("stn").joinpath("paper_results.yaml").read_text())


def load_metrics(paths: Sequence[Path | str]) -> pd.DataFrame:
    """One row per run: network, task, seed, test_error (NaN where the run diverged: it has
    none) and the training statistics."""
    rows = []
    for path in paths:
        metrics = json.loads(Path(path).read_text())
        rows.append({k: v for k, v in metrics.items() if k != "config"})
    table = pd.DataFrame(rows)
    table["test_error"] = pd.to_numeric(table["test_error"])
    return table


def finished_errors(metrics: pd.DataFrame, network: str, task: str) -> pd.DataFrame:
    """The runs of ``network`` on ``task`` that finished (diverged runs have no test error)."""
    runs = metrics[(metrics["network"] == network) & (metrics["task"] == task)]
    return runs[runs["test_error"].notna()]


def summary_table(
    metrics: pd.DataFrame, networks: Sequence[str], tasks: Sequence[str], paper: str
) -> pd.DataFrame:
    """Per network (rows) and task: mean error, its standard deviation and 95% t-interval
    half-width over the seeds that finished, their number and the number that diverged, the
    paper's error, our mean minus the
    paper's, Jaderberg et al.'s error where the paper quotes it, the mean share of an applied
    rotation that the transformer undoes (see :func:`stn.invariance.rotation_undone`) and the
    residual pose spread in degrees."""
    reported = paper_results().get(paper, {})
    jaderberg = paper_results()["jaderberg"].get(paper, {})
    rows = []
    for network in networks:
        row: dict[str, object] = {"network": network}
        for task in tasks:
            every = metrics[(metrics["network"] == network) & (metrics["task"] == task)]
            runs = every[every["test_error"].notna()]
            ours = t_interval(runs["test_error"].tolist()) if len(runs) else None
            theirs = reported.get(network, {}).get(task)
            row |= {
                f"{task}_mean": ours and ours.mean,
                f"{task}_std": runs["test_error"].std() if len(runs) > 1 else None,
                f"{task}_ci95": ours and ours.half_width,
                f"{task}_seeds": len(runs),
                f"{task}_diverged": len(every) - len(runs),
                f"{task}_paper": theirs,
                f"{task}_diff": None if theirs is None or ours is None else ours.mean - theirs,
                f"{task}_jaderberg": jaderberg.get(network, {}).get(task),
            }
            for measure in MEASURES:
                values = runs[measure].dropna() if measure in runs else pd.Series(dtype=float)
                row[f"{task}_{measure}"] = values.mean() if len(values) else None
        rows.append(row)
    return pd.DataFrame(rows).set_index("network")


MEASURES = {"rotation_undone": "undone", "pose_spread": "spread (°)"}
"""Per-run invariance measures shown beside the errors, by metrics key and column name."""


def _errors_by_seed(metrics: pd.DataFrame, network: str, task: str) -> dict[int, float]:
    """The test errors of the seeds that finished: contrasts pair only seeds finished on both sides."""
    runs = finished_errors(metrics, network, task)
    return dict(zip(runs["seed"], runs["test_error"], strict=True))


def contrast_table(
    metrics: pd.DataFrame, contrasts: Sequence[Sequence[str]], tasks: Sequence[str]
) -> pd.DataFrame:
    """Per stated ordering ``[A, B]`` (A's error is larger) and task: the mean over seeds of
    A's error minus B's, paired by seed, its 95% t-interval half-width and the seeds."""
    rows = []
    for first, second in contrasts:
        row: dict[str, object] = {"contrast": f"{first} − {second}"}
        for task in tasks:
            a, b = _errors_by_seed(metrics, first, task), _errors_by_seed(metrics, second, task)
            difference = paired_difference(a, b) if set(a) & set(b) else None
            row |= {
                f"{task}_mean": difference and difference.mean,
                f"{task}_ci95": difference and difference.half_width,
                f"{task}_seeds": difference.n if difference else 0,
            }
        rows.append(row)
    columns = [f"{task}_{part}" for task in tasks for part in ("mean", "ci95", "seeds")]
    return pd.DataFrame(rows, columns=["contrast", *columns]).set_index("contrast")


def _cell(value: float | None, fmt: str = "{:.2f}") -> str:
    if value is None or pd.isna(value):
        return "–"
    text = fmt.format(value)
    return text.lstrip("-") if float(text) == 0 else text  # no "-0.00"


def interval_cell(
    mean: float | None,
    half_width: float | None,
    seeds: int,
    pm: str,
    fmt: str = "{:.2f}",
    diverged: int = 0,
) -> str:
    """``mean ± half-width (n=k)``; with one seed no interval: ``mean (n=1, no CI)``; with
    diverged runs ``(n=k, d diverged)``, and ``diverged (d/d)`` where none finished."""
    if mean is None or pd.isna(mean):
        return f"diverged ({diverged}/{diverged})" if diverged else "–"
    runs = f"n={seeds:.0f}" + (f", {diverged} diverged" if diverged else "")
    if half_width is None or pd.isna(half_width):
        return f"{fmt.format(mean)} ({runs}, no CI)"
    return f"{fmt.format(mean)} {pm} {half_width:.2f} ({runs})"


def _verdict(mean: float | None, half_width: float | None) -> str:
    if mean is None or pd.isna(mean) or half_width is None or pd.isna(half_width):
        return "–"
    return "yes" if mean - half_width > 0 else "no" if mean + half_width < 0 else "unclear"


def format_table(table: pd.DataFrame, tasks: Sequence[str], latex: bool = False) -> pd.DataFrame:
    """Human-readable cells: ``mean ± 95% CI (n)``; where the paper reports the value, the
    paper's value and the difference (with the same interval); where measured, the
    invariance measures."""
    pm = r"$\pm$" if latex else "±"
    out = {}
    for task in tasks:
        cis, seeds, diverged = table[f"{task}_ci95"], table[f"{task}_seeds"], table[f"{task}_diverged"]
        out[f"{task} ours"] = [
            interval_cell(m, c, n, pm, diverged=d)
            for m, c, n, d in zip(table[f"{task}_mean"], cis, seeds, diverged, strict=True)
        ]
        if table[f"{task}_paper"].notna().any():
            out[f"{task} paper"] = [_cell(v) for v in table[f"{task}_paper"]]
            out[f"{task} diff"] = [
                interval_cell(d, c, n, pm, "{:+.2f}")
                for d, c, n in zip(table[f"{task}_diff"], cis, seeds, strict=True)
            ]
        if table[f"{task}_jaderberg"].notna().any():
            out[f"{task} Jaderberg"] = [_cell(v) for v in table[f"{task}_jaderberg"]]
        for measure, column in MEASURES.items():
            if table[f"{task}_{measure}"].notna().any():
                out[f"{task} {column}"] = [_cell(v) for v in table[f"{task}_{measure}"]]
    return pd.DataFrame(out, index=table.index)


def format_contrasts(table: pd.DataFrame, tasks: Sequence[str], latex: bool = False) -> pd.DataFrame:
    """``difference ± 95% CI (n)`` per task and whether the stated ordering holds (the
    interval lies above 0: yes; below: no; spans 0: unclear)."""
    pm = r"$\pm$" if latex else "±"
    out = {}
    for task in tasks:
        means, cis = table[f"{task}_mean"], table[f"{task}_ci95"]
        out[f"{task} difference"] = [
            interval_cell(m, c, n, pm, "{:+.2f}")
            for m, c, n in zip(means, cis, table[f"{task}_seeds"], strict=True)
        ]
        out[f"{task} holds"] = [_verdict(m, c) for m, c in zip(means, cis, strict=True)]
    return pd.DataFrame(out, index=table.index)


HTML_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; white-space: nowrap; }}
th {{ background: #f3f3f3; }}
</style></head>
<body><p>{caption}</p>
{table}
</body></html>
"""


def _latex_text(text: str) -> str:
    return text.replace("%", r"\%").replace("±", r"$\pm$").replace("−", "--").replace("°", r"$^\circ$")


def write_table(
    table: pd.DataFrame,
    cells: Callable[[bool], pd.DataFrame],
    stem: Path | str,
    caption: str,
) -> None:
    """Write ``stem``.csv (the numbers of ``table``), .md, .html (a page for the report) and
    .tex (booktabs) of the human-readable ``cells(latex)``."""
    stem = Path(stem)
    atomic_write(stem.with_suffix(".csv"), lambda tmp: table.to_csv(tmp, float_format="%.4f"))
    markdown = cells(False).to_markdown(disable_numparse=True)
    atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text(f"{caption}\n\n{markdown}\n"))
    page = HTML_PAGE.format(
        title=html.escape(stem.name), caption=html.escape(caption), table=cells(False).to_html()
    )
    atomic_write(stem.with_suffix(".html"), lambda tmp: tmp.write_text(page))
    latex = cells(True)
    columns = "l" + "r" * len(latex.columns)
    header = " & ".join(
        [latex.index.name or "", *(_latex_text(c).replace("diff", r"$\Delta$") for c in latex.columns)]
    )
    body = "\n".join(
        " & ".join([_latex_text(name), *row]) + r" \\"
        for name, row in zip(latex.index, latex.values.tolist(), strict=True)
    )
    tex = "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            f"\\caption{{{_latex_text(caption)}}}",
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


def depth_and_kind(network: str) -> tuple[int, str]:
    """A single-transformer network's depth and its name with the depth as ``X``."""
    spec = parse_network_name(network)
    if len(spec.transformers) != 1:
        raise ValueError(f"{network}: a depth figure needs networks with one transformer (or CNN)")
    depth = spec.transformers[0].depth
    return depth, network.replace(str(depth), "X", 1)


def depth_figure(
    metrics: pd.DataFrame,
    networks: Sequence[str],
    tasks: Sequence[str],
    stem: Path | str,
    paper: str | None = None,
) -> None:
    """Test error against the depth of the transformer: one line per task (and kind of
    network, e.g. STN-CX, STN-SLX and the iterative STN-SLXx2), mean with its 95% t-interval
    over seeds; the CNN of each task as a dashed line of the same colour; the paper's errors
    (table ``paper`` of paper_results.yaml) as crosses."""
    reported = paper_results().get(paper or "", {})
    figure, axis = plt.subplots(figsize=(5.2, 3.6))
    kinds = {network: depth_and_kind(network) for network in networks if network != "CNN"}
    several_kinds = len({kind for _, kind in kinds.values()}) > 1
    lines = [(task, kind) for task in tasks for kind in dict.fromkeys(kind for _, kind in kinds.values())]
    dodge = {line: 0.06 * (i - (len(lines) - 1) / 2) for i, line in enumerate(lines)}  # apart
    for task, colour in zip(tasks, sns.color_palette(n_colors=len(tasks)), strict=True):
        for kind in dict.fromkeys(kind for _, kind in kinds.values()):
            points = []
            for network, (depth, of_kind) in sorted(kinds.items(), key=lambda item: item[1][0]):
                errors = finished_errors(metrics, network, task)["test_error"]
                if of_kind == kind and len(errors):
                    points.append((depth, t_interval(errors.tolist())))
            if not points:
                continue
            depths = [d + dodge[task, kind] for d, _ in points]
            means = [i.mean for _, i in points]
            spans = [i.half_width or 0.0 for _, i in points]
            label = f"{task} {kind}" if several_kinds else task
            iterative = "x" in kind  # STN-SLXx2: the transformer applied twice
            style = {"linestyle": ":", "marker": "s"} if iterative else {"marker": "o"}
            axis.errorbar(depths, means, yerr=spans, color=colour, capsize=3, label=label, **style)
        crosses = [(kinds[n][0], reported[n][task]) for n in kinds if task in reported.get(n, {})]
        if crosses:
            at, errors = zip(*crosses, strict=True)
            axis.scatter(at, errors, marker="x", color=colour, label=f"{task} paper", zorder=3)
        cnn = finished_errors(metrics, "CNN", task)["test_error"]
        if "CNN" in networks and len(cnn):
            axis.axhline(cnn.mean(), color=colour, linestyle="--", linewidth=1, label=f"{task} CNN")
    axis.set_xlabel("depth of the transformer (0: the input)")
    axis.set_ylabel("test error (%)")
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
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
