"""The code version and environment a run records: in a git checkout, clean and modified, and outside one."""

from __future__ import annotations

import json
import platform
import re
import subprocess
from pathlib import Path

import pytest
import torch
from docutils.core import publish_parts

from stn import provenance
from stn.io import sha256sum


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=test@example.org", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def package_in(monkeypatch, tmp_path):
    """Point provenance at a package folder (``<folder>/__init__.py``) below ``tmp_path``; no git
    search goes above ``tmp_path``. Returns a function that makes the folder and points at it."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))

    def point(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text('"""A package."""\n')
        monkeypatch.setattr(provenance, "PACKAGE_DIR", folder)
        provenance.code_version.cache_clear()
        return folder

    yield point
    provenance.code_version.cache_clear()


@pytest.fixture
def checkout(tmp_path, package_in) -> Path:
    """A git repository with one commit holding the package ``stn/``."""
    repo = tmp_path / "repo"
    package_in(repo / "stn")
    git(repo, "init", "-q")
    git(repo, "add", "stn/__init__.py")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def test_a_clean_checkout_gives_its_commit(checkout):
    assert provenance.code_version() == {"commit": git(checkout, "rev-parse", "HEAD"), "modified": False}


def test_a_changed_tracked_file_marks_the_tree_modified(checkout):
    (checkout / "stn" / "__init__.py").write_text('"""Changed."""\n')
    assert provenance.code_version() == {"commit": git(checkout, "rev-parse", "HEAD"), "modified": True}


def test_untracked_files_leave_the_tree_unmodified(checkout):
    (checkout / "notes.txt").write_text("scratch\n")
    assert provenance.code_version()["modified"] is False


def test_the_version_is_cached_per_process(checkout):
    first = provenance.code_version()
    (checkout / "stn" / "__init__.py").write_text('"""Changed."""\n')
    assert provenance.code_version() is first


def test_outside_a_checkout_nothing_is_known(tmp_path, package_in):
    package_in(tmp_path / "site-packages" / "stn")
    assert provenance.code_version() == {"commit": None, "modified": None}


def test_a_package_untracked_in_an_enclosing_checkout_is_not_attributed_to_it(checkout, package_in):
    """An installed copy inside a checkout (a venv's site-packages) is not the checkout's code."""
    package_in(checkout / ".venv" / "site-packages" / "stn")
    assert provenance.code_version() == {"commit": None, "modified": None}


def test_without_git_nothing_is_known_and_nothing_fails(checkout, monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert provenance.code_version() == {"commit": None, "modified": None}


def test_the_environment_on_the_cpu():
    environment = provenance.environment("cpu")
    assert environment["python"] == platform.python_version()
    assert environment["torch"] == torch.__version__
    assert environment["cuda"] == torch.version.cuda
    assert environment["device"] == "cpu"
    assert environment["processor"] == provenance.cpu_model()
    assert environment["processor"] and environment["host"]


def test_a_checkpoint_holding_the_description_loads_with_weights_only(tmp_path):
    """Plain types only: a checkpoint's train_stats must load with torch.load(weights_only=True)."""
    torch.save({"train_stats": {"provenance": provenance.describe("cpu")}}, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=True)
    assert loaded["train_stats"]["provenance"] == provenance.describe("cpu")
    assert type(loaded["train_stats"]["provenance"]["environment"]["torch"]) is str


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_environment_on_a_gpu_names_it():
    environment = provenance.environment(torch.device("cuda", 0))
    assert environment["processor"] == torch.cuda.get_device_name(0)
    assert environment["cuda"] == torch.version.cuda


def test_describe_holds_both(checkout):
    assert provenance.describe("cpu") == {
        "code": provenance.code_version(),
        "environment": provenance.environment("cpu"),
    }


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
        content |= {provenance.TRAIN_STATS_KEY: recorded} if recorded else {}
        metrics.append(write_json(tmp_path / f"metrics{index}.json", content))
    svhn = {"resources/data/svhn/train_32x32.mat": "c" * 64, "resources/data/svhn/test_32x32.mat": "d" * 64}
    manifests = [
        write_json(tmp_path / "mnist.json", {"data": {"source": "embedded"}, "raw_files": {}}),
        write_json(tmp_path / "svhn.json", {"data": {"source": "download"}, "raw_files": svhn}),
    ]
    return [config], metrics, manifests


def test_summarise_gathers_what_produced_the_runs(workflow_files):
    configs, metrics, manifests = workflow_files
    summary = provenance.summarise(configs, metrics, manifests)
    assert summary["config_files"] == [{"path": str(configs[0]), "sha256": sha256sum(configs[0])}]
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
        provenance.summarise([], [metrics], [])


def test_the_front_page_renders_every_part_without_a_docutils_complaint(workflow_files):
    summary = provenance.summarise(*workflow_files)
    page = rendered(provenance.front_page_rst(summary))
    for title in ("Config files", "Code version", "Environment", "Raw data", "Training time"):
        assert title in page
    assert f"{workflow_files[0][0]} {sha256sum(workflow_files[0][0])}" in page
    assert f"{'a' * 40} no 2" in page and f"{'b' * 40} yes: tracked files differed from the commit 1" in page
    assert "3.11.7 2.5.0 none none cpu AMD EPYC laptop 2" in page
    assert "3.11.7 2.5.0 12.4 90100 cuda:0 NVIDIA H200 node7 1" in page
    assert "recorded no code version or environment: 1" in page
    assert f"svhn resources/data/svhn/train_32x32.mat {'c' * 64}" in page
    assert "data shipped with a Python package): mnist" in page
    assert "R 2 0:02:30 S 2 1:00:10 all 4 1:02:40" in page


def test_the_front_page_of_runs_that_recorded_nothing(tmp_path):
    metrics = write_json(tmp_path / "metrics.json", {"task": "R", "train_seconds": 1.0})
    summary = provenance.summarise([], [metrics], [write_json(tmp_path / "mnist.json", {"raw_files": {}})])
    page = rendered(provenance.front_page_rst(summary))
    assert "Code version The git commit of the stn package each run trained with. None recorded." in page
    assert "retrain them" in page.lower()
