"""The Plankton DAG end to end on a generated miniature PlanktonSet served from 127.0.0.1:
download, verify, prepare, split, train, evaluate, the table, the depth figure and the rotation
analysis; and the paper's Plankton config planned under the SLURM profile."""

from __future__ import annotations

import io
import json
import tarfile
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stn.io import sha256sum
from tests.local_http import serve
from tests.workflow.test_workflow import planned_jobs, slurm_plan, snakemake

ARCHIVE = "127422.2.3.tar.gz"
CLASSES = ("acantharia", "copepod", "diatom")
PER_CLASS = 6
NETWORKS = ["CNN", "STN-C2", "STN-SL2", "STN-SL2x2"]


def miniature_planktonset(path: Path) -> int:
    """A tarball shaped as NCEI's: a top folder, one folder per class, JPEGs of varying sizes
    and aspect ratios (dark shapes on white, as the originals); returns the image count."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for c, name in enumerate(CLASSES):
            for i in range(PER_CLASS):
                height, width = (int(v) for v in rng.integers(12, 60, 2))
                image = np.full((height, width), 255, np.uint8)
                image[height // 4 : height // 4 + 4 + 2 * c, width // 3 :] = 40 * c
                data = io.BytesIO()
                Image.fromarray(image).save(data, format="JPEG")
                member = tarfile.TarInfo(f"0127422/2.3/data/0-data/train/{name}/{i}.jpg")
                member.size = len(data.getvalue())
                tar.addfile(member, io.BytesIO(data.getvalue()))
    return len(CLASSES) * PER_CLASS


def plankton_experiment(mirror: str, images: int) -> dict:
    return {
        "datasets": {
            "plankton": {
                "mirrors": [mirror],
                "images": images,
                "classes": len(CLASSES),
                "image_size": 32,
                "test_fraction": 0.34,
            }
        },
        "tasks": {
            "Plankton": {
                "dataset": "plankton",
                "canvas": 32,
                "rotation": 180,
                "translation": 3,
                "log2_scale": [-0.37851162, 0.37851162],
                "shear": 20,
                "flip": 0.5,
            }
        },
        "networks": ["CNN", "STN-C2", "STN-SL2"],
        "seeds": [0],
        "backbones": {
            "plankton": {
                "name": "plankton",
                "args": {"channels": [4, 4, 4, 4], "pool_after": [2, 4], "hidden": [8], "num_classes": 3},
            }
        },
        "train": {"batch_size": 4, "epochs": None, "iterations": 2, "checkpoint_every": 100},
        "report": {
            "tables": {
                "plankton": {
                    "tasks": ["Plankton"],
                    "networks": NETWORKS,
                    "contrasts": [["STN-C2", "STN-SL2"]],
                }
            },
            "depth_figures": ["plankton"],
            "rotation_figures": ["plankton"],
            "rotation": {"images": 4},
        },
        "resources": {"train_gpus": 0},
        "device": "cpu",
    }


@pytest.mark.slow
def test_plankton_dag_runs_end_to_end_on_a_generated_planktonset(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    images = miniature_planktonset(served / ARCHIVE)
    requests = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args) -> None:
            pass

    work = tmp_path / "work"
    work.mkdir()
    with serve(partial(Handler, directory=str(served))) as base:
        experiment = plankton_experiment(f"{base}/", images)
        snakemake(work, experiment)
    assert requests == [f"/{ARCHIVE}"]
    assert (work / "resources/data/plankton" / ARCHIVE).read_bytes() == (served / ARCHIVE).read_bytes()

    manifest = json.loads((work / "resources/prepared/plankton.json").read_text())
    assert manifest["train_images"] + manifest["test_images"] == images
    assert manifest["test_images"] == len(CLASSES) * 2  # stratified: 2 of 6 per class
    assert len(manifest["raw_files"]) == 1  # the results state their data: the archive's SHA-256
    assert list(manifest["raw_files"].values()) == [sha256sum(served / ARCHIVE)]
    assert list((work / "resources/data/plankton/prepared").glob("split-*.csv"))

    table = pd.read_csv(work / "results/tables/plankton.csv", index_col=0)
    assert table.loc["STN-C2", "Plankton_paper"] == 22.3 and table.loc["STN-SL2", "Plankton_paper"] == 21.5
    stability = pd.read_csv(work / "results/tables/plankton_stability.csv", index_col=0)
    assert list(stability.index) == NETWORKS[1:] and set(stability["kind"]) <= {"C", "DL", "SL"}
    for stem in (
        "plankton",
        "plankton_rotation",
        "plankton_errors",
        "plankton_stability",
        "plankton_training",
    ):
        for ext in ("png", "pdf"):
            assert (work / f"results/figures/{stem}.{ext}").stat().st_size > 0
    spreads = pd.read_csv(work / "results/tables/plankton_rotation.csv", index_col=0)
    assert list(spreads.index) == NETWORKS[1:]  # every network with a transformer
    assert "mod 180°" in (work / "results/tables/plankton_rotation.md").read_text()
    rotation = json.loads((work / "results/runs/Plankton/STN-SL2x2/seed0/rotation.json").read_text())
    assert rotation["images"] == 4 and len(rotation["angles"]) == 17
    assert set(rotation["spread"]) == {"360", "180"}
    assert not (work / "results/runs/Plankton/CNN/seed0/rotation.json").exists()
    metrics = json.loads((work / "results/runs/Plankton/STN-C2/seed0/metrics.json").read_text())
    assert metrics["test_size"] == manifest["test_images"]
    assert planned_jobs(work, experiment) == {}  # a rerun does nothing, and needs no server


def test_paper_plankton_config_plans_every_run_with_one_gpu_each(tmp_path):
    experiment, jobs, train_blocks = slurm_plan(tmp_path, "plankton")
    runs = len(experiment["networks"]) * len(experiment["seeds"])
    assert runs == 64
    assert jobs["train"] == jobs["evaluate"] == runs
    assert jobs["rotation_analysis"] == runs - len(experiment["seeds"])  # every network but the CNN
    assert jobs["download"] == 1 and jobs["prepare_data"] == 1 and jobs["rotation_report"] == 1
    assert len(train_blocks) == runs and all("gpu=1" in b for b in train_blocks)
