"""Figures from the metrics tables (stn.report.figures) and of what networks do (stn.report.views)."""

import numpy as np
import pandas as pd
import pytest
import torch

from stn import build_network
from stn.invariance import realign_feature_maps, transformation
from stn.report.figures import depth_figure
from stn.report.views import angle_figure, proof_figure


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
