import json

import pandas as pd
import pytest

from stn.report import error_figure, load_metrics, paper_results, summary_table, write_table


@pytest.fixture()
def metrics(tmp_path):
    rows = [
        ("CNN", "R", 0, 6.0, None),
        ("CNN", "R", 1, 4.0, None),
        ("STN-C1", "R", 0, 3.0, 0.25),
        ("STN-C1", "S", 0, 2.5, None),
    ]
    paths = []
    for network, task, seed, error, undone in rows:
        path = tmp_path / f"{network}-{task}-{seed}.json"
        metrics = {"network": network, "task": task, "seed": seed, "test_error": error}
        path.write_text(json.dumps(metrics | {"rotation_undone": undone, "config": {}}))
        paths.append(path)
    return load_metrics(paths)


def test_summary_table_means_spreads_and_paper_differences(metrics):
    table = summary_table(metrics, ["CNN", "STN-C1"], ["R", "S"], paper="mnist")
    assert table.loc["CNN", "R_mean"] == 5.0
    assert table.loc["CNN", "R_std"] == pytest.approx(2**0.5)
    assert table.loc["CNN", "R_seeds"] == 2
    assert table.loc["CNN", "R_paper"] == paper_results()["mnist"]["CNN"]["R"] == 1.71
    assert table.loc["CNN", "R_diff"] == pytest.approx(5.0 - 1.71)
    assert pd.isna(table.loc["CNN", "S_mean"])  # no run of CNN on S
    assert table.loc["STN-C1", "R_undone"] == 0.25 and pd.isna(table.loc["CNN", "R_undone"])


def test_tables_and_figures_are_written(metrics, tmp_path):
    table = summary_table(metrics, ["CNN", "STN-C1"], ["R", "S"], paper="mnist")
    write_table(table, ["R", "S"], tmp_path / "mnist", "caption")
    markdown = (tmp_path / "mnist.md").read_text()
    assert "5.00 ± 1.41 (n=2)" in markdown and "+3.29" in markdown
    assert "R undone" in markdown and "0.25" in markdown and "S undone" not in markdown
    tex = (tmp_path / "mnist.tex").read_text()
    assert r"\toprule" in tex and r"5.00 $\pm$ 1.41" in tex
    assert r"\begin{tabular}{lrrrrrrr}" in tex  # network, R: 4 columns, S: 3
    assert pd.read_csv(tmp_path / "mnist.csv", index_col=0).loc["STN-C1", "S_mean"] == 2.5
    error_figure(metrics, ["CNN", "STN-C1"], ["R", "S"], tmp_path / "errors", paper="mnist")
    assert (tmp_path / "errors.png").stat().st_size > 0 and (tmp_path / "errors.pdf").stat().st_size > 0
