"""Profiles of training steps: ``python -m stn bench --profile STEPS``."""

from __future__ import annotations

import json

import yaml

from stn.bench.cli import main
from tests.bench.conftest import tiny_experiment


def test_profile_names_the_costliest_operators_and_the_augmentation_share(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_experiment()))
    out = tmp_path / "profile.json"
    argv = ["--config", str(config), "--device", "cpu", "--levers", "today", "fp32", "bf16"]
    assert main([*argv, "--networks", "STN-C1", "--profile", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [(p["task"], p["network"], p["lever"]) for p in report["profiles"]] == [
        ("R", "STN-C1", "today"),
        ("R", "STN-C1", "fp32"),  # bf16 is CUDA-only: skipped on a CPU
    ]
    for profile in report["profiles"]:
        assert profile["clock"] == "cpu" and profile["steps"] == 2 and profile["step_ms"] > 0
        assert profile["busy_ms"] > 0
        assert 0 < profile["augmentation_share"] < 1  # the labelled rendering, within the step
        shares = [op["share"] for op in profile["top"]]
        assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0 + 1e-6
        assert any("convolution" in op["name"] for op in profile["top"])
        trace = tmp_path / "traces" / f"R-STN-C1-{profile['lever']}.json"
        assert json.loads(trace.read_text())["traceEvents"]
    assert "augmentation" in capsys.readouterr().out
