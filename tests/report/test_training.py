"""Training figures, the stability table, and tables that count diverged runs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from stn.report.tables import contrast_table, format_contrasts, format_table, load_metrics, summary_table
from stn.report.training import (
    IDENTITY_DISPLACEMENT,
    TrainedRun,
    classify,
    format_stability,
    load_runs,
    stability_figure,
    stability_table,
    training_figure,
)


def log(displacement: float, angle_std: float, loss: float = 0.5, label: str = "C1") -> pd.DataFrame:
    """A two-row log whose last row has the given transformer state."""
    rows = []
    for step, scale in ((10, 2.0), (20, 1.0)):
        rows.append(
            {
                "step": step,
                "loss": loss * scale,
                f"{label}_displacement": displacement,
                f"{label}_angle_std": angle_std,
                f"{label}_log2_scale_std": 0.0,
                f"{label}_shift_std": 0.0,
            }
        )
    return pd.DataFrame(rows)


def run(network: str, seed: int, diverged: bool = False, **state) -> TrainedRun:
    return TrainedRun(network, "R", seed, diverged, log(**state) if not diverged else log(0.0, 0.0))


RUNS = [
    run("STN-DL1", 0, diverged=True),
    run("STN-DL1", 1, displacement=0.001, angle_std=0.0),  # never left the identity
    run("STN-DL1", 2, displacement=0.3, angle_std=0.2),  # one warp for all
    run("STN-SL1", 0, displacement=0.3, angle_std=15.0, loss=0.4),
    run("STN-SL1", 1, displacement=0.4, angle_std=20.0, loss=0.6),
    run("STN-SL1", 2, displacement=0.5, angle_std=25.0, loss=0.5),
]


def test_runs_are_classed_by_their_final_transformer():
    assert [classify(r) for r in RUNS] == ["diverged", "identity", "collapsed", "aligns", "aligns", "aligns"]
    assert run("STN-C1", 0, displacement=IDENTITY_DISPLACEMENT, angle_std=0.0).first_transformer() == "C1"


def test_stability_table_counts_per_kind_and_depth_and_leaves_oracles_out(tmp_path):
    networks = ["CNN", "STN-C1-oracle", "STN-DL1", "STN-SL1"]
    table = stability_table(RUNS, networks, ["R"])
    assert list(table.index) == ["STN-DL1", "STN-SL1"]
    assert table.loc["STN-DL1", ["kind", "depth"]].tolist() == ["DL", "1"]
    dl, sl = table.loc["STN-DL1"], table.loc["STN-SL1"]
    assert (dl["R_runs"], dl["R_diverged"], dl["R_identity"], dl["R_collapsed"]) == (3, 1, 1, 1)
    assert (sl["R_diverged"], sl["R_identity"], sl["R_collapsed"]) == (0, 0, 0)
    assert sl["R_loss_std"] == pytest.approx(pd.Series([0.4, 0.6, 0.5]).std())
    cells = format_stability(table, ["R"])
    assert cells.loc["STN-DL1", "R diverged"] == "1/3"
    stability_figure(RUNS, networks, ["R"], tmp_path / "stability")
    training_figure(RUNS, networks, ["R"], tmp_path / "training")
    for stem in ("stability", "training"):
        for suffix in (".png", ".pdf"):
            assert (tmp_path / stem).with_suffix(suffix).stat().st_size > 1000


def write_run(directory, network: str, seed: int, error: float | None) -> None:
    folder = directory / network / f"seed{seed}"
    folder.mkdir(parents=True)
    status = "finished" if error is not None else "diverged"
    metrics = {"network": network, "task": "R", "seed": seed, "test_error": error, "status": status}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    log(0.3, 10.0).to_csv(folder / "train_log.csv", index=False)


def test_tables_average_finished_runs_and_count_the_diverged(tmp_path):
    errors = {"CNN": [3.0, 3.5, 4.0], "STN-C1": [2.0, None, 2.4], "STN-DL1": [None, None, None]}
    for network, values in errors.items():
        for seed, error in enumerate(values):
            write_run(tmp_path, network, seed, error)
    paths = sorted(str(p) for p in tmp_path.rglob("metrics.json"))
    metrics = load_metrics(paths)
    table = summary_table(metrics, list(errors), ["R"], paper="mnist")
    assert table.loc["STN-C1", "R_mean"] == pytest.approx(2.2) and table.loc["STN-C1", "R_seeds"] == 2
    assert table.loc["STN-C1", "R_diverged"] == 1 and table.loc["CNN", "R_diverged"] == 0
    cells = format_table(table, ["R"])
    assert cells.loc["STN-C1", "R ours"].endswith("(n=2, 1 diverged)")
    assert cells.loc["STN-DL1", "R ours"] == "diverged (3/3)"
    assert "(n=3)" in cells.loc["CNN", "R ours"]
    contrasts = contrast_table(metrics, [["CNN", "STN-C1"], ["CNN", "STN-DL1"]], ["R"])
    assert contrasts.loc["CNN − STN-C1", "R_seeds"] == 2  # seeds 0 and 2: finished on both sides
    assert contrasts.loc["CNN − STN-C1", "R_mean"] == pytest.approx(((3.0 - 2.0) + (4.0 - 2.4)) / 2)
    assert format_contrasts(contrasts, ["R"]).loc["CNN − STN-DL1", "R holds"] == "–"
    runs = load_runs(paths, [p.replace("metrics.json", "train_log.csv") for p in paths])
    assert sum(r.diverged for r in runs) == 4 and len(runs[0].log) == 2
