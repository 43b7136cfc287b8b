"""The fidelity check (``tools/gpu-check.sh fidelity``): its summary table, its deadline, and a
dry run on the CPU that trains, evaluates, packs its states and resumes from them."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from stn.fidelity import binomial_se, fidelity_configs, summary_table, train_all

ROOT = Path(__file__).resolve().parents[1]
PAPER = yaml.safe_load((ROOT / "config/paper.yaml").read_text())


def row(network: str, error: float, undone: float | None = None) -> dict:
    slope = None if undone is None else -undone
    return {
        "network": network,
        "test_error": error,
        "test_size": 10_000,
        "rotation_undone": undone,
        "pose_spread": None if undone is None else 30.0,
        "angle_slope": slope,
    }


def test_the_standard_error_of_a_ten_thousand_image_test():
    assert binomial_se(1.3, 10_000) == pytest.approx(0.11, abs=0.005)  # the figure
    assert binomial_se(1.3, 2_500) == pytest.approx(2 * binomial_se(1.3, 10_000))


def test_the_table_says_which_errors_differ_by_more_than_twice_their_standard_error():
    paper = {"CNN": 1.71, "STN-C1": 1.32}
    table = summary_table([row("CNN", 2.30), row("STN-C1", 1.40, undone=0.2), row("STN-X", 1.0)], paper)
    lines = table.splitlines()
    cnn, c1, unknown = ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])
    assert cnn[:6] == ["CNN", "1.71", "2.30", "+0.59", f"{binomial_se(2.3, 10_000):.2f}", "yes"]
    assert cnn[6:] == ["", "", ""]  # no transformer: nothing undone
    assert c1[3:] == ["+0.08", f"{binomial_se(1.4, 10_000):.2f}", "no", "0.20", "30.0", "-0.20"]
    assert unknown[1] == "" and unknown[3] == "" and unknown[5] == ""  # not in the paper


def test_the_paper_config_runs_as_configured_and_a_dry_run_small():
    full = fidelity_configs(PAPER, ["STN-C1"], seed=0)["STN-C1"]
    assert full["train"]["iterations"] == 150_000 and full["data"]["source"] == "torchvision"
    assert full["model"]["backbone_args"]["loc_head"] == "authors" and full["task"]["rotation"] == 90
    dry = fidelity_configs(PAPER, ["STN-C1"], seed=0, dry_run=True)["STN-C1"]
    assert dry["data"]["source"] == "embedded" and dry["device"] == "cpu"
    assert dry["model"] == full["model"] and dry["train"]["iterations"] < 10


def test_nothing_starts_after_the_deadline(tmp_path):
    configs = fidelity_configs(PAPER, ["CNN", "STN-C1"], seed=0, dry_run=True)
    assert train_all(configs, tmp_path, parallel=2, deadline=time.monotonic()) == ["CNN", "STN-C1"]
    assert not list(tmp_path.glob("*/model.pt*"))


def test_a_state_of_another_config_is_refused(tmp_path):
    dry = fidelity_configs(PAPER, ["CNN"], seed=0, dry_run=True)
    (tmp_path / "CNN").mkdir()
    (tmp_path / "CNN/config.yaml").write_text(yaml.safe_dump(fidelity_configs(PAPER, ["CNN"], seed=0)["CNN"]))
    with pytest.raises(ValueError, match="holds a run of another config"):
        train_all(dry, tmp_path, parallel=1, deadline=time.monotonic() + 60)


@pytest.mark.slow
def test_the_dry_run_trains_evaluates_and_resumes_from_its_packed_states(tmp_path):
    env = os.environ | {
        "OUT": str(tmp_path / "out"),
        "FIDELITY_NETWORKS": "CNN STN-C1",
        "FIDELITY_STATE": str(tmp_path / "none.tar"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }

    def dry_run() -> str:
        done = subprocess.run(
            ["bash", "tools/gpu-check.sh", "fidelity", "--dry-run"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    first = dry_run()
    assert "training: CNN, STN-C1" in first
    assert "| CNN | 1.71 |" in first and "| STN-C1 | 1.32 |" in first
    archive = tmp_path / "out/fidelity-state.tar"
    with tarfile.open(archive) as packed:
        names = packed.getnames()
    assert "./STN-C1/model.pt" in names and not any("test-" in name for name in names)
    env["FIDELITY_STATE"] = str(tmp_path / "state.tar")
    archive.rename(env["FIDELITY_STATE"])
    second = dry_run()
    assert "resuming from" in second and "training:" not in second
    table = [line for line in first.splitlines() if line.startswith("| ")]
    assert table == [line for line in second.splitlines() if line.startswith("| ")]
