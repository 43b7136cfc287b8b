"""Concurrent runs in the bench: the speedup's arithmetic, and a clean skip without CUDA or MPS."""

from __future__ import annotations

import json

import pytest

from stn.bench import concurrency
from stn.bench.cli import main
from stn.bench.concurrency import Unavailable, _counts, _speedups, mps_daemon


def test_counts_double_up_to_the_most():
    assert _counts(1) == [1]
    assert _counts(8) == [1, 2, 4, 8]
    assert _counts(6) == [1, 2, 4, 6]


def test_runs_that_take_turns_gain_nothing_and_runs_that_overlap_gain_their_number():
    configs = [{"network": "A"}, {"network": "B"}]
    turns = _speedups(configs, 4, lambda chosen: [100.0 / len(chosen)] * len(chosen))
    overlap = _speedups(configs, 4, lambda chosen: [100.0] * len(chosen))
    assert {k: m["speedup"] for k, m in turns["runs"].items()} == pytest.approx(
        {"1": 1.0, "2": 1.0, "4": 1.0}
    )
    assert {k: m["speedup"] for k, m in overlap["runs"].items()} == pytest.approx(
        {"1": 1.0, "2": 2.0, "4": 4.0}
    )


def test_without_the_mps_binary_the_daemon_is_unavailable(monkeypatch):
    monkeypatch.setattr(concurrency.shutil, "which", lambda name: None)
    with pytest.raises(Unavailable, match="nvidia-cuda-mps-control is not installed"), mps_daemon():
        pass


def test_without_cuda_both_measurements_say_so_and_skip(tmp_path, capsys):
    out = tmp_path / "concurrency.json"
    argv = ["--config", "config/paper.yaml", "--device", "cpu", "--tasks", "R", "--networks", "CNN"]
    assert main([*argv, "--pack", "2", "--mps", "--streams", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["mps"] == {"skipped": "--mps needs CUDA (device cpu): skipped"}
    assert report["streams"] == {"skipped": "--streams needs CUDA (device cpu): skipped"}
    assert "streams: --streams needs CUDA" in capsys.readouterr().out
