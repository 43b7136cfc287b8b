"""The statistics tables of many runs, their cells and their files."""

import json
from functools import partial

import pandas as pd
import pytest
from scipy import stats

from stn.report.figures import error_figure
from stn.report.tables import (
    contrast_table,
    format_contrasts,
    format_table,
    load_metrics,
    paper_results,
    summary_table,
)
from stn.report.writers import write_table


@pytest.fixture()
def metrics(tmp_path):
    rows = [
        ("CNN", "R", 0, 6.0, None, None),
        ("CNN", "R", 1, 4.0, None, None),
        ("STN-C1", "R", 0, 3.0, 0.25, 40.0),
        ("STN-C1", "R", 1, 2.0, 0.35, 30.0),
        ("STN-C1", "S", 0, 2.5, None, None),
    ]
    paths = []
    for network, task, seed, error, undone, spread in rows:
        path = tmp_path / f"{network}-{task}-{seed}.json"
        metrics = {"network": network, "task": task, "seed": seed, "test_error": error}
        path.write_text(
            json.dumps(metrics | {"rotation_undone": undone, "pose_spread": spread, "config": {}})
        )
        paths.append(path)
    return load_metrics(paths)


def test_summary_table_means_intervals_and_paper_differences(metrics):
    table = summary_table(metrics, ["CNN", "STN-C1"], ["R", "S"], paper="mnist")
    assert table.loc["CNN", "R_mean"] == 5.0
    assert table.loc["CNN", "R_std"] == pytest.approx(2**0.5)
    assert table.loc["CNN", "R_ci95"] == pytest.approx(stats.t.ppf(0.975, 1) * 2**0.5 / 2**0.5)
    assert table.loc["CNN", "R_seeds"] == 2
    assert table.loc["CNN", "R_paper"] == paper_results()["mnist"]["CNN"]["R"] == 1.71
    assert table.loc["CNN", "R_diff"] == pytest.approx(5.0 - 1.71)
    assert pd.isna(table.loc["CNN", "S_mean"])  # no run of CNN on S
    assert pd.isna(table.loc["STN-C1", "S_ci95"]) and table.loc["STN-C1", "S_seeds"] == 1
    assert table.loc["STN-C1", "R_rotation_undone"] == pytest.approx(0.3)
    assert table.loc["STN-C1", "R_pose_spread"] == pytest.approx(35.0)
    assert pd.isna(table.loc["CNN", "R_rotation_undone"])


def test_contrasts_are_paired_by_seed(metrics):
    table = contrast_table(metrics, [["CNN", "STN-C1"], ["STN-C1", "CNN"]], ["R", "S"])
    # differences 6 - 3 = 3 and 4 - 2 = 2: mean 2.5, sd 0.707
    assert table.loc["CNN − STN-C1", "R_mean"] == pytest.approx(2.5)
    assert table.loc["CNN − STN-C1", "R_ci95"] == pytest.approx(stats.t.ppf(0.975, 1) * 0.5)
    assert table.loc["CNN − STN-C1", "S_seeds"] == 0 and pd.isna(table.loc["CNN − STN-C1", "S_mean"])
    cells = format_contrasts(table, ["R", "S"])
    assert cells.loc["CNN − STN-C1", "R holds"] == "unclear"  # t(1) is wide: 2.5 ± 6.35
    assert cells.loc["STN-C1 − CNN", "R difference"].startswith("-2.50 ±")


def test_tables_and_figures_are_written(metrics, tmp_path):
    table = summary_table(metrics, ["CNN", "STN-C1"], ["R", "S"], paper="mnist")
    write_table(table, partial(format_table, table, ["R", "S"]), tmp_path / "mnist", "error (%) ± 95% CI")
    markdown = (tmp_path / "mnist.md").read_text()
    half = stats.t.ppf(0.975, 1)
    assert f"5.00 ± {half:.2f} (n=2)" in markdown and f"+3.29 ± {half:.2f} (n=2)" in markdown
    assert "2.50 (n=1, no CI)" in markdown  # one seed: no interval, said so
    assert "R undone" in markdown and "0.30" in markdown and "S undone" not in markdown
    assert "R spread (°)" in markdown and "35.00" in markdown
    tex = (tmp_path / "mnist.tex").read_text()
    assert r"\toprule" in tex and r"5.00 $\pm$" in tex and r"error (\%) $\pm$ 95\% CI" in tex
    assert r"\begin{tabular}{lrrrrrrrr}" in tex  # network; R: ours, paper, diff, undone, spread; S: 3
    assert pd.read_csv(tmp_path / "mnist.csv", index_col=0).loc["STN-C1", "S_mean"] == 2.5
    error_figure(metrics, ["CNN", "STN-C1"], ["R", "S"], tmp_path / "errors", paper="mnist")
    assert (tmp_path / "errors.png").stat().st_size > 0 and (tmp_path / "errors.pdf").stat().st_size > 0


def test_table_without_paper_values_has_no_paper_columns(metrics, tmp_path):
    table = summary_table(metrics, ["CNN", "STN-C1"], ["R"], paper="not_in_the_paper")
    assert list(format_table(table, ["R"]).columns) == ["R ours", "R undone", "R spread (°)"]
