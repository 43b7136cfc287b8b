"""The report's front page: what produced the runs, gathered from metrics and manifests, and its rst."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from docutils.core import publish_parts

from stn import front_page
from stn.io import sha256sum
from stn.provenance import TRAIN_STATS_KEY


def plain(html: str) -> str:
    """HTML as its words, separated by single spaces."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def rendered(rst: str) -> str:
    """The words of ``rst`` rendered as HTML by docutils, as Snakemake's report does; any
    warning (a malformed table, an unknown target) raises."""
    return plain(publish_parts(rst, writer="html", settings_overrides={"halt_level": 2})["body"])


def write_json(path: Path, content: dict) -> Path:
    path.write_text(json.dumps(content))
    return path


CPU = {"python": "3.11.7", "torch": "2.5.0", "cuda": None, "cudnn": None, "device": "cpu"}
CPU |= {"processor": "AMD EPYC", "host": "laptop"}
GPU = CPU | {"cuda": "12.4", "cudnn": 90100, "device": "cuda:0", "processor": "NVIDIA H200", "host": "node7"}


@pytest.fixture
def workflow_files(tmp_path) -> tuple[list[Path], list[Path], list[Path]]:
    """A config file, four runs' metrics (one trained before provenance was recorded) and two
    data sets' manifests (one shipped with a package, no raw files)."""
    config = tmp_path / "config.yaml"
    config.write_text("seeds: [0, 1]\n")
    clean = {"commit": "a" * 40, "modified": False}
    runs = [
        ("R", 100.0, {"code": clean, "environment": CPU}),
        ("R", 50.5, {"code": clean, "environment": CPU}),
        ("S", 3600.0, {"code": {"commit": "b" * 40, "modified": True}, "environment": GPU}),
        ("S", 10.0, None),
    ]
    metrics = []
    for index, (task, seconds, recorded) in enumerate(runs):
        content = {"task": task, "train_seconds": seconds, "test_error": 1.0}
        content |= {TRAIN_STATS_KEY: recorded} if recorded else {}
        metrics.append(write_json(tmp_path / f"metrics{index}.json", content))
    svhn = {"resources/data/svhn/train_32x32.mat": "c" * 64, "resources/data/svhn/test_32x32.mat": "d" * 64}
    manifests = [
        write_json(tmp_path / "mnist.json", {"data": {"source": "embedded"}, "raw_files": {}}),
        write_json(tmp_path / "svhn.json", {"data": {"source": "download"}, "raw_files": svhn}),
    ]
    return [config], metrics, manifests


def test_summarise_gathers_what_produced_the_runs(workflow_files):
    configs, metrics, manifests = workflow_files
    summary = front_page.summarise(configs, metrics, manifests)
    assert summary["config_files"] == [
        {"path": str(configs[0]), "sha256": sha256sum(configs[0]), "text": "seeds: [0, 1]\n"}
    ]
    assert summary["code"] == [
        {"commit": "a" * 40, "modified": False, "runs": 2},
        {"commit": "b" * 40, "modified": True, "runs": 1},
    ]
    assert summary["environments"] == [CPU | {"runs": 2}, GPU | {"runs": 1}]
    assert summary["unrecorded"] == 1
    assert summary["data"] == {"mnist": {}, "svhn": json.loads(manifests[1].read_text())["raw_files"]}
    assert summary["training"] == {
        "R": {"runs": 2, "train_seconds": 150.5},
        "S": {"runs": 2, "train_seconds": 3610.0},
    }
    json.dumps(summary)  # written as JSON


def test_metrics_without_a_training_time_are_refused(tmp_path):
    metrics = write_json(tmp_path / "metrics.json", {"task": "R", "test_error": 1.0})
    with pytest.raises(KeyError, match=re.escape("metrics.json: no `train_seconds`")):
        front_page.summarise([], [metrics], [])


def test_the_front_page_renders_every_part_without_a_docutils_complaint(workflow_files):
    summary = front_page.summarise(*workflow_files)
    page = rendered(front_page.front_page_rst(summary))
    for title in ("Config files", "Code version", "Environment", "Raw data", "Training time"):
        assert title in page
    assert f"{workflow_files[0][0]} {sha256sum(workflow_files[0][0])}" in page
    assert f"{'a' * 40} no 2" in page and f"{'b' * 40} yes 1" in page
    assert "3.11.7 2.5.0 none none cpu AMD EPYC laptop 2" in page
    assert "3.11.7 2.5.0 12.4 90100 cuda:0 NVIDIA H200 node7 1" in page
    assert "recorded no code version or environment: 1" in page
    assert f"svhn resources/data/svhn/train_32x32.mat {'c' * 64}" in page
    assert "data shipped with a Python package): mnist" in page
    assert "R 2 0:02:30 S 2 1:00:10 all 4 1:02:40" in page


def test_the_front_page_of_runs_that_recorded_nothing(tmp_path):
    metrics = write_json(tmp_path / "metrics.json", {"task": "R", "train_seconds": 1.0})
    summary = front_page.summarise([], [metrics], [write_json(tmp_path / "mnist.json", {"raw_files": {}})])
    page = rendered(front_page.front_page_rst(summary))
    assert "tracked files differed. None recorded. Environment" in page
    assert "retrain them" in page.lower()
