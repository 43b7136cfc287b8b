"""The rotation analysis of a table's networks, drawn and tabulated."""

import numpy as np
import pytest

from stn.evaluation import summarise_rotations
from stn.invariance import FULL_TURN_ANGLES
from stn.report.rotation import format_rotation_table, rotation_figure, rotation_table


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
