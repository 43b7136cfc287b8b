"""The authors' rotation analysis of a table's networks, drawn and tabulated: the predicted angle
against the applied one (:func:`stn.evaluation.analyse_rotations`), and the residual pose's
medoid spread by depth."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from stn.report.figures import depth_and_kind, save_figure
from stn.report.tables import interval_cell
from stn.statistics import t_interval


def rotation_table(analyses: Sequence[dict], networks: Sequence[str]) -> pd.DataFrame:
    """Per network with transformers, the residual pose's medoid spread (degrees) of the rotation
    analysis, modulo 360 and 180: mean and 95% t-interval half-width over seeds, and the seeds."""
    rows = {}
    for network in networks:
        runs = [a for a in analyses if a["network"] == network]
        if not runs:
            continue
        row = {}
        for period in ("360", "180"):
            interval = t_interval([r["spread"][period] for r in runs])
            row[f"spread{period}_mean"], row[f"spread{period}_ci95"] = interval.mean, interval.half_width
        ignoring = {f"ignoring{period}": runs[0]["spread_ignoring"][period] for period in ("360", "180")}
        rows[network] = row | {"seeds": len(runs), **ignoring}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "network"
    return table


def format_rotation_table(table: pd.DataFrame, latex: bool = False) -> pd.DataFrame:
    """``mean ± 95% CI (n)`` of the spread modulo 360° and modulo 180°."""
    pm = r"$\pm$" if latex else "±"
    return pd.DataFrame(
        {
            f"spread mod {period}°": [
                interval_cell(m, c, n, pm, "{:.1f}")
                for m, c, n in zip(
                    table[f"spread{period}_mean"], table[f"spread{period}_ci95"], table["seeds"], strict=True
                )
            ]
            for period in ("360", "180")
        },
        index=table.index,
    )


def rotation_figure(analyses: Sequence[dict], networks: Sequence[str], stem: Path | str) -> None:
    """The authors' rotation analysis (:func:`stn.evaluation.analyse_rotations`), one row of
    panels per kind of network (STN-CX, STN-DLX, STN-SLX, iterative STN-SLXx2) and one column per
    depth: the predicted angle against the applied one (each applied angle's histogram over
    images and seeds, normalised; the dotted line is full compensation, predicted = -applied).
    Below, the medoid spread of the residual pose against depth: modulo 360° (solid) and the
    authors' modulo 180° (dashed), mean and 95% t-interval over seeds, each kind's line starting
    from STN-C0 (at depth 0 every kind is the same network); grey lines mark a transformer that
    ignores rotations."""
    kinds = {network: depth_and_kind(network) for network in networks if network != "CNN"}
    by_network: dict[str, list[dict]] = {network: [] for network in kinds}
    for analysis in analyses:
        if analysis["network"] in by_network:
            by_network[analysis["network"]].append(analysis)
    missing = [network for network, runs in by_network.items() if not runs]
    if missing:
        raise ValueError(f"no rotation analysis for {missing}")
    spreads = rotation_table(analyses, networks)
    rows = list(dict.fromkeys(kind for _, kind in kinds.values()))
    depths = sorted({depth for depth, _ in kinds.values()})
    figure = plt.figure(figsize=(1.9 * len(depths) + 0.8, 1.9 * len(rows) + 3.2))
    grid = figure.add_gridspec(len(rows) + 1, len(depths), height_ratios=[1] * len(rows) + [1.6])
    for network, (depth, kind) in kinds.items():
        runs = by_network[network]
        axis = figure.add_subplot(grid[rows.index(kind), depths.index(depth)])
        applied = np.asarray(runs[0]["angles"])
        step = 360.0 / len(applied)
        counts = np.sum([np.asarray(r["predicted_histogram"], dtype=float) for r in runs], axis=0)
        counts /= counts.sum(axis=1, keepdims=True).clip(min=1)
        axis.pcolormesh(
            np.append(applied, applied[-1] + step) - step / 2,
            np.asarray(runs[0]["predicted_edges"]),
            counts.T,
            cmap="Blues",
            vmin=0,
        )
        axis.scatter(applied, (-applied + 180) % 360 - 180, s=3, color="tab:red", zorder=3)
        axis.set_title(f"{network}\nspread {spreads.loc[network, 'spread360_mean']:.0f}°", fontsize=8)
        axis.set_xlim(-180, 180)
        axis.set_ylim(-180, 180)
        axis.set_xticks([-180, 0, 180])
        axis.set_yticks([-180, 0, 180])
        axis.tick_params(labelsize=6)
        if depth == min(d for d, k in kinds.values() if k == kind):
            axis.set_ylabel(f"{kind}\npredicted (°)", fontsize=7)
        if rows.index(kind) == len(rows) - 1:
            axis.set_xlabel("applied (°)", fontsize=7)
    summary = figure.add_subplot(grid[len(rows), :])
    for kind, colour in zip(rows, sns.color_palette(n_colors=len(rows)), strict=True):
        members = sorted((depth, network) for network, (depth, k) in kinds.items() if k == kind)
        if "x" not in kind and members[0][0] > 0 and "STN-C0" in by_network:
            members.insert(0, (0, "STN-C0"))  # at depth 0 every kind is one network
        for period, style in (("360", "-"), ("180", "--")):
            rows_of_kind = spreads.loc[[network for _, network in members]]
            summary.errorbar(
                [depth for depth, _ in members],
                rows_of_kind[f"spread{period}_mean"],
                yerr=rows_of_kind[f"spread{period}_ci95"].fillna(0.0),
                color=colour,
                linestyle=style if "x" not in kind else ":",
                marker="o" if period == "360" else "s",
                capsize=3,
                label=f"{kind} (mod {period}°)",
            )
    for period, style in (("360", "-"), ("180", "--")):
        summary.axhline(spreads[f"ignoring{period}"].iloc[0], color="grey", linestyle=style, linewidth=1)
    summary.set_xticks(depths)
    summary.set_xlabel("depth of the transformer (0: the input)")
    summary.set_ylabel("residual pose spread (°)")
    summary.legend(fontsize=6, ncol=2)
    figure.tight_layout()
    save_figure(figure, stem)
