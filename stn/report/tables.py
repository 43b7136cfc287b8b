"""The statistics tables of many runs' metrics, and their human-readable cells."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from stn.statistics import paired_difference, t_interval


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


MEASURES = {"rotation_undone": "undone", "pose_spread": "spread (°)"}
"""Per-run invariance measures shown beside the errors, by metrics key and column name."""


def summary_table(
    metrics: pd.DataFrame, networks: Sequence[str], tasks: Sequence[str], paper: str
) -> pd.DataFrame:
    """Per network (rows) and task: mean error, its standard deviation and 95% t-interval
    half-width over the seeds that finished, their number and the number that diverged, the
    paper's error, our mean minus the paper's, Jaderberg et al.'s error where the paper quotes
    it, the mean share of an applied rotation that the transformer undoes (see
    :func:`stn.invariance.rotation_undone`) and the residual pose spread in degrees."""
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
