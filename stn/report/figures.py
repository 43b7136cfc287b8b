"""Figures from the metrics tables: test errors by network and by depth; saving a figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from stn.io import atomic_write
from stn.report.tables import finished_errors, paper_results
from stn.statistics import t_interval
from stn.variants import parse_network_name


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
