import json
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from stn import build_network
from stn.evaluation import summarise_rotations
from stn.invariance import FULL_TURN_ANGLES, realign_feature_maps, transformation
from stn.report import (
    angle_figure,
    contrast_table,
    depth_figure,
    error_figure,
    format_contrasts,
    format_table,
    load_metrics,
    paper_results,
    proof_figure,
    summary_table,
    write_table,
)
from stn.rotation_report import format_rotation_table, rotation_figure, rotation_table


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


def test_depth_angle_and_proof_figures_are_drawn(tmp_path, images):
    rows = [
        {"network": n, "task": t, "seed": s, "test_error": e + s}
        for t in ("R", "T")
        for n, e in (("CNN", 5.0), ("STN-C0-oracle", 2.0), ("STN-C1-oracle", 3.5))
        for s in (0, 1)
    ]
    networks = ["CNN", "STN-C0-oracle", "STN-C1-oracle"]
    depth_figure(pd.DataFrame(rows), networks, ["R", "T"], tmp_path / "depth")
    applied = np.linspace(-90, 90, 200)
    angle_figure({"aligner": (applied, -applied), "identity": (applied, 0 * applied)}, tmp_path / "angles")
    model = build_network("CNN", "mnist", channels=[6, 8])
    realigned = {
        a: realign_feature_maps(model, images, transformation("rotation", a, len(images))) for a in (90, 180)
    }
    proof_figure({"CNN": realigned}, 2, tmp_path / "proof")
    for stem in ("depth", "angles", "proof"):
        for suffix in (".png", ".pdf"):
            assert (tmp_path / stem).with_suffix(suffix).stat().st_size > 1000


def test_depth_figure_needs_single_transformer_networks(tmp_path):
    rows = pd.DataFrame([{"network": "STN-C01", "task": "R", "seed": 0, "test_error": 1.0}])
    with pytest.raises(ValueError, match="one transformer"):
        depth_figure(rows, ["STN-C01"], ["R"], tmp_path / "depth")


def test_realignment_of_feature_maps_fails_where_input_alignment_is_exact(images):
    """The proof figure's numbers: for 90 and 180 degrees the input warp is exact on the pixel
    grid, so aligning the input returns the original maps; aligning maps does not."""
    torch.manual_seed(0)
    model = build_network("CNN", "mnist", channels=[8, 8])
    for angle in (90.0, 180.0):
        result = realign_feature_maps(model, images, transformation("rotation", angle, len(images)))
        assert torch.nanmean(result.input_error) < 1e-5
        assert torch.nanmean(result.features_error) > 0.3
        assert result.original.shape == result.features.shape == (len(images), 8, 10, 10)


def test_rotation_figure_is_drawn_from_the_analyses_of_every_network(tmp_path):
    """Panels for every kind and depth, from per-run analyses (a compensating network and one
    that ignores rotations); a network without analyses is an error that names it."""
    rng = np.random.default_rng(0)
    applied = np.asarray(FULL_TURN_ANGLES)
    networks = ["CNN", "STN-C0", "STN-C2", "STN-SL2", "STN-SL2x2"]
    analyses = []
    for network, share in (("STN-C0", 1.0), ("STN-C2", 0.0), ("STN-SL2", 0.9), ("STN-SL2x2", 1.0)):
        for seed in (0, 1):
            predicted = -share * applied + rng.normal(0, 5, (20, len(applied)))
            analyses.append(
                {"network": network, "seed": seed, **summarise_rotations(predicted, FULL_TURN_ANGLES)}
            )
    rotation_figure(analyses, networks, tmp_path / "rotation")
    for suffix in (".png", ".pdf"):
        assert (tmp_path / "rotation").with_suffix(suffix).stat().st_size > 1000
    with pytest.raises(ValueError, match="STN-DL2"):
        rotation_figure(analyses, [*networks, "STN-DL2"], tmp_path / "missing")
    table = rotation_table(analyses, networks)
    assert list(table.index) == networks[1:] and (table["seeds"] == 2).all()
    compensating, ignoring = table.loc["STN-C0"], table.loc["STN-C2"]
    assert (
        compensating["spread360_mean"] < 10 < 80 < ignoring["spread360_mean"] <= ignoring["ignoring360"] + 1
    )
    spreads = [a["spread"]["180"] for a in analyses if a["network"] == "STN-C2"]
    assert ignoring["spread180_mean"] == pytest.approx(np.mean(spreads))
    assert format_rotation_table(table).loc["STN-C2", "spread mod 360°"].endswith("(n=2)")
