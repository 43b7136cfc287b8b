"""Block timings: ``python -m stn bench --blocks``."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from stn.bench.cli import main
from tests.bench.conftest import tiny_experiment


def test_blocks_times_each_conv_and_pool_pair_both_ways(tmp_path, capsys):
    experiment = copy.deepcopy(tiny_experiment())  # its backbone is the shared TINY_BACKBONE
    experiment["backbones"]["mnist"]["args"]["channels"] = [10, 8]  # block 2 reads 10 channels
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(experiment))
    out = tmp_path / "blocks.json"
    argv = ["--config", str(config), "--device", "cpu", "--networks", "STN-C1", "--seconds", "0.05"]
    assert main([*argv, "--blocks", "--out", str(out)]) == 0
    blocks = json.loads(out.read_text())["blocks"]
    # the classifier's two blocks at their step inputs (28 px digits, then 10 px maps of 10 channels)
    classifier = {tuple(b["input"]): b for b in blocks if b["block"].startswith("blocks.")}
    assert set(classifier) == {(16, 1, 28, 28), (16, 10, 10, 10)}
    assert classifier[16, 1, 28, 28]["fused_by_polyphase"]
    assert not classifier[16, 10, 10, 10]["fused_by_polyphase"]  # but timed, to see whether it would pay
    # as in the step: the digits need no gradient, the warped depth-1 maps do (theta learns from them)
    assert not classifier[16, 1, 28, 28]["input_grad"] and classifier[16, 10, 10, 10]["input_grad"]
    for entry in blocks:
        assert entry["task"] == "R" and entry["network"] == "STN-C1"
        assert min(entry["ms"].values()) > 0
        assert entry["speedup"] == pytest.approx(
            entry["ms"]["conv then pool"] / entry["ms"]["conv_then_pool"]
        )
    assert "conv_then_pool" in capsys.readouterr().out
