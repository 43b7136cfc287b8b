"""The SVHN DAG end to end on generated format-1 archives served from 127.0.0.1: download,
verify, parse, crop, train, evaluate, tables and the depth figure; and the paper's SVHN config."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.data.test_svhn import SPLITS, Mini, mini, server  # noqa: F401  (fixtures)
from tests.workflow.test_workflow import planned_jobs, slurm_plan, snakemake


def svhn_experiment(mirror: str, generated: Mini) -> dict:
    archives = {
        s: {"size": f.size, "sha256": f.sha256, "images": f.images} for s, f in generated.files.items()
    }
    return {
        "datasets": {
            "svhn": {"mirrors": [mirror], "splits": ["train", "extra", "test"], "archives": archives}
        },
        "tasks": {"SVHN": {"dataset": "svhn", "canvas": 64}},
        "networks": ["CNN", "STN-SL3x2"],
        "seeds": [0],
        "backbones": {"svhn": {"name": "svhn", "args": {"channels": [4] * 8, "hidden": [8]}}},
        "train": {"batch_size": 4, "epochs": None, "iterations": 2, "checkpoint_every": 100},
        "report": {
            "tables": {
                "svhn_iterative": {"tasks": ["SVHN"], "contrasts": [["CNN", "STN-SL3x2"]]},
                "svhn_depth": {"tasks": ["SVHN"], "networks": ["STN-C0", "STN-SL3x2"]},
            },
            "depth_figures": ["svhn_depth"],
        },
        "resources": {"train_gpus": 0},
        "device": "cpu",
    }


@pytest.mark.slow
def test_svhn_dag_runs_end_to_end_on_generated_archives(tmp_path, mini, server):  # noqa: F811
    experiment = svhn_experiment(f"{server.base}/good/", mini)
    snakemake(tmp_path, experiment)
    assert sorted(path for path, _ in server.requests) == [
        "/good/extra.tar.gz",
        "/good/test.tar.gz",
        "/good/train.tar.gz",
    ]
    manifest = json.loads((tmp_path / "resources/prepared/svhn.json").read_text())
    assert {Path(p).name: digest for p, digest in manifest["raw_files"].items()} == {
        f.name: f.sha256 for f in mini.files.values()
    }  # the results state their data
    six_digits = 1  # the generated train split holds one 6-digit sequence, which is dropped
    train = len(SPLITS["train"][1]) + len(SPLITS["extra"][1]) - six_digits
    assert manifest["train_images"] == train and manifest["test_images"] == len(SPLITS["test"][1])
    assert "dropped for more than 5 digits" in (tmp_path / "logs/prepare/svhn.log").read_text()
    for table in ("svhn_iterative", "svhn_depth"):
        for ext in ("csv", "md", "tex"):
            assert (tmp_path / f"results/tables/{table}.{ext}").stat().st_size > 0
    iterative = pd.read_csv(tmp_path / "results/tables/svhn_iterative.csv", index_col=0)
    assert iterative.loc["CNN", "SVHN_paper"] == 3.88 and iterative.loc["CNN", "SVHN_jaderberg"] == 4.0
    assert "SVHN Jaderberg" in (tmp_path / "results/tables/svhn_iterative.md").read_text()
    for ext in ("png", "pdf"):
        assert (tmp_path / f"results/figures/svhn_depth.{ext}").stat().st_size > 0
    for table in ("svhn_iterative", "svhn_depth"):  # both have learned transformers
        stability = pd.read_csv(tmp_path / f"results/tables/{table}_stability.csv", index_col=0)
        assert "CNN" not in stability.index and (stability["SVHN_runs"] == 1).all()
        for stem in (f"{table}_stability", f"{table}_training"):
            assert (tmp_path / f"results/figures/{stem}.png").stat().st_size > 0
    metrics = json.loads((tmp_path / "results/runs/SVHN/STN-SL3x2/seed0/metrics.json").read_text())
    assert metrics["test_size"] == manifest["test_images"] and metrics["rotation_undone"] is None
    assert planned_jobs(tmp_path, experiment) == {}  # a rerun does nothing, and needs no server


def test_paper_svhn_config_plans_every_run_with_one_gpu_each(tmp_path):
    experiment, jobs, train_blocks = slurm_plan(tmp_path, "svhn")
    networks = len(experiment["networks"]) + len(experiment["report"]["tables"]["svhn_depth"]["networks"])
    assert jobs["train"] == jobs["evaluate"] == networks * len(experiment["seeds"]) == 48
    assert jobs["download"] == 3 and jobs["prepare_data"] == 1
    assert len(train_blocks) == 48 and all("gpu=1" in b for b in train_blocks)
