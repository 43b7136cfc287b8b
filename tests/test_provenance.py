"""The code version and environment a run records: in a git checkout, clean and modified, and outside one."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import pytest
import torch

from stn import provenance


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
