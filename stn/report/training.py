"""How the runs of a table trained: training curves, and the stability of learned transformers.

Every run's ``train_log.csv`` (:mod:`stn.train_log`) is read with its ``metrics.json``. A
learned transformer's final state (the log's last row, of its first transformer: the one the
angle histogram reads) is classed as:

- *diverged*: the run stopped on a non-finite or exploding loss (``status: diverged``);
- *identity*: it never left the identity, final displacement ‖θ − I‖ below
  :data:`IDENTITY_DISPLACEMENT` (a rotation of about 0.8°);
- *collapsed*: it applies one warp to every image, whatever its pose: final spreads of the
  angle, the log2 scale and the translation below :data:`COLLAPSED_SPREADS`;
- otherwise it warps each image its own way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FormatStrFormatter

from stn.report.figures import save_figure
from stn.train_log import read_log
from stn.variants import parse_network_name

IDENTITY_DISPLACEMENT = 0.02
COLLAPSED_SPREADS = {"angle_std": 1.0, "log2_scale_std": 0.02, "shift_std": 0.01}
"""Below all three (degrees, log2 units, normalised coordinates), a transformer applies one warp."""


@dataclass(frozen=True)
class TrainedRun:
    """One run's metrics and training log."""

    network: str
    task: str
    seed: int
    diverged: bool
    log: pd.DataFrame

    def first_transformer(self) -> str | None:
        """The label of the run's first logged transformer (e.g. ``C1``), None without one."""
        labels = [c.removesuffix("_displacement") for c in self.log.columns if c.endswith("_displacement")]
        return labels[0] if labels else None

    def final(self, column: str) -> float:
        """The log's last value of ``column`` (of the first transformer, for its measures)."""
        label = self.first_transformer()
        name = column if column in self.log else f"{label}_{column}"
        return float(self.log[name].iloc[-1]) if len(self.log) else float("nan")


def load_runs(metrics_paths: Sequence[Path | str], log_paths: Sequence[Path | str]) -> list[TrainedRun]:
    """The runs of ``metrics.json`` files, each with its ``train_log.csv``."""
    runs = []
    for path, log_file in zip(metrics_paths, log_paths, strict=True):
        metrics = json.loads(Path(path).read_text())
        log = pd.DataFrame(read_log(log_file))
        diverged = metrics.get("status") == "diverged"
        runs.append(TrainedRun(metrics["network"], metrics["task"], metrics["seed"], diverged, log))
    return runs


def learns_a_transformer(network: str) -> bool:
    """Whether ``network`` has a transformer with a localisation network (not an oracle)."""
    return parse_network_name(network).learns_localisation


def _curves(runs: Sequence[TrainedRun], column: str) -> pd.DataFrame | None:
    """Per step, the median, minimum and maximum over ``runs`` of ``column`` (a transformer
    measure: of each run's first transformer); None where no run logs it."""
    series = []
    for run in runs:
        label = run.first_transformer()
        name = column if column in run.log else f"{label}_{column}"
        if name in run.log and len(run.log):
            series.append(run.log.set_index("step")[name])
    if not series:
        return None
    table = pd.concat(series, axis=1)
    return pd.DataFrame({"median": table.median(axis=1), "low": table.min(axis=1), "high": table.max(axis=1)})


def _draw_curves(axis: plt.Axes, runs: Sequence[TrainedRun], networks: Sequence[str], measure: str) -> None:
    """One line per network (median over its seeds, their range as a band) of ``measure``; a black
    cross where a diverged run stopped."""
    colours = dict(zip(networks, sns.color_palette(n_colors=len(networks)), strict=True))
    for network in networks:
        of_network = [run for run in runs if run.network == network]
        curve = _curves(of_network, measure)
        if curve is None:
            continue
        axis.plot(curve.index, curve["median"], color=colours[network], label=network, linewidth=1.2)
        axis.fill_between(curve.index, curve["low"], curve["high"], color=colours[network], alpha=0.2)
        for run in of_network:
            if run.diverged and len(run.log):
                axis.scatter(run.log["step"].iloc[-1], run.final(measure), marker="x", color="black")


def training_figure(
    runs: Sequence[TrainedRun], networks: Sequence[str], tasks: Sequence[str], stem: Path | str
) -> None:
    """Per task (columns): the training loss, the first transformer's displacement from the
    identity and the spread of its angle over the images against steps, per network the median
    over seeds with the seeds' range as a band. A transformer that moved but whose angle spread
    stays near 0 applies one warp to every image."""
    figure, axes = plt.subplots(3, len(tasks), figsize=(3.6 * len(tasks), 7.6), squeeze=False, sharex="col")
    for column, task in enumerate(tasks):
        of_task = [run for run in runs if run.task == task]
        loss, displacement, spread = axes[:, column]
        _draw_curves(loss, of_task, networks, "loss")
        loss.set(yscale="log", ylabel="training loss", title=task)
        _draw_curves(displacement, of_task, networks, "displacement")
        displacement.set_yscale("symlog", linthresh=0.01)
        displacement.set(ylabel="‖θ − I‖ (first transformer)")
        displacement.axhline(IDENTITY_DISPLACEMENT, color="grey", linestyle=":", linewidth=1)
        _draw_curves(spread, of_task, networks, "angle_std")
        spread.set_yscale("symlog", linthresh=1.0)
        spread.set(ylabel="angle spread over images (°)", xlabel="step")
        spread.axhline(COLLAPSED_SPREADS["angle_std"], color="grey", linestyle=":", linewidth=1)
    axes[0, -1].legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, stem)


def classify(run: TrainedRun) -> str:
    """``diverged``, ``identity``, ``collapsed`` or ``aligns`` (see the module docstring)."""
    if run.diverged:
        return "diverged"
    if run.final("displacement") < IDENTITY_DISPLACEMENT:
        return "identity"
    if all(run.final(column) < bound for column, bound in COLLAPSED_SPREADS.items()):
        return "collapsed"
    return "aligns"


def _kind_and_depth(network: str) -> tuple[str, str]:
    """The localisation kind (C, DL, SL) of a network's first transformer and its depths."""
    transformers = parse_network_name(network).transformers
    reads = transformers[0].reads
    kind = {"shared": "SL", "copy": "DL"}.get(reads, "C")
    iterations = transformers[0].iterations
    depths = "".join(str(t.depth) for t in transformers) + (f"x{iterations}" if iterations > 1 else "")
    return kind, depths


def stability_table(
    runs: Sequence[TrainedRun], networks: Sequence[str], tasks: Sequence[str]
) -> pd.DataFrame:
    """Per network with a learned transformer (rows) and task: the runs, how many diverged,
    never left the identity, collapsed to one warp, and the standard deviation over seeds of
    the final training loss of the runs that finished."""
    rows = []
    for network in filter(learns_a_transformer, networks):
        kind, depth = _kind_and_depth(network)
        row: dict[str, object] = {"network": network, "kind": kind, "depth": depth}
        for task in tasks:
            of_task = [r for r in runs if r.network == network and r.task == task]
            classes = [classify(r) for r in of_task]
            losses = [r.final("loss") for r in of_task if not r.diverged]
            row |= {
                f"{task}_runs": len(of_task),
                **{f"{task}_{c}": classes.count(c) for c in ("diverged", "identity", "collapsed")},
                f"{task}_loss_std": float(np.std(losses, ddof=1)) if len(losses) > 1 else None,
            }
        rows.append(row)
    return pd.DataFrame(rows).set_index("network")


def format_stability(table: pd.DataFrame, tasks: Sequence[str], latex: bool = False) -> pd.DataFrame:
    """Counts as ``k/n`` per task, and the final loss's spread."""
    out = {"kind": table["kind"], "depth": table["depth"]}
    for task in tasks:
        runs = table[f"{task}_runs"]
        for column in ("diverged", "identity", "collapsed"):
            out[f"{task} {column}"] = [
                f"{k:.0f}/{n:.0f}" for k, n in zip(table[f"{task}_{column}"], runs, strict=True)
            ]
        out[f"{task} loss sd"] = ["–" if pd.isna(v) else f"{v:.3f}" for v in table[f"{task}_loss_std"]]
    return pd.DataFrame(out, index=table.index)


CLASS_MARKERS = {"aligns": "o", "collapsed": "s", "identity": "^"}


def stability_figure(
    runs: Sequence[TrainedRun], networks: Sequence[str], tasks: Sequence[str], stem: Path | str
) -> None:
    """Per task: each run's final training loss against its network (grouped by kind), the
    marker saying whether its transformer aligns, collapsed or stayed at the identity; diverged
    runs as red crosses at the top."""
    learned = list(filter(learns_a_transformer, networks))
    figure, axes = plt.subplots(
        1, len(tasks), figsize=(max(3.0, 0.7 * len(learned)) * len(tasks), 3.6), squeeze=False
    )
    colours = dict(zip(("C", "DL", "SL"), sns.color_palette(n_colors=3), strict=True))
    for axis, task in zip(axes[0], tasks, strict=True):
        finished = [r.final("loss") for r in runs if r.task == task and not r.diverged]
        top = max(finished, default=1.0) * 1.5
        for position, network in enumerate(learned):
            kind, _ = _kind_and_depth(network)
            for run in (r for r in runs if r.network == network and r.task == task):
                verdict = classify(run)
                if verdict == "diverged":
                    axis.scatter(position, top, marker="x", color="tab:red", zorder=3)
                else:
                    axis.scatter(
                        position,
                        run.final("loss"),
                        marker=CLASS_MARKERS[verdict],
                        color=colours[kind],
                        alpha=0.8,
                    )
        axis.set_xticks(range(len(learned)), learned, rotation=45, ha="right", fontsize=7)
        axis.set_yscale("log")
        for ticks in (axis.yaxis.set_major_formatter, axis.yaxis.set_minor_formatter):
            ticks(FormatStrFormatter("%g"))
        axis.set_title(task)
        axis.set_ylabel("final training loss")
    handles = [
        plt.Line2D([], [], marker=m, linestyle="", color="grey", label=c) for c, m in CLASS_MARKERS.items()
    ]
    handles.append(plt.Line2D([], [], marker="x", linestyle="", color="tab:red", label="diverged"))
    axes[0, -1].legend(handles=handles, fontsize=7)
    figure.tight_layout()
    save_figure(figure, stem)
