"""run.sh: one run of a directory at a time, and recovery of a stale Snakemake lock after a crash.

``run.sh`` runs here in a temporary directory with a stub ``snakemake`` (and ``python``) in a
ready-made virtual environment, so the real pipeline never runs: the stub records its
arguments, takes Snakemake's lock files like the real one, and waits while ``hold`` exists.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

STUB_SNAKEMAKE = """#!/usr/bin/env bash
echo "$*" >>calls.log
if [[ " $* " == *" --unlock "* ]]; then rm -f .snakemake/locks/*; exit 0; fi
mkdir -p .snakemake/locks
touch .snakemake/locks/0.input.lock .snakemake/locks/0.output.lock
touch started
while [ -e hold ]; do sleep 0.05; done
rm -f .snakemake/locks/*
"""

STUB_PYTHON = """#!/usr/bin/env bash
echo "python $*" >>calls.log
"""

pytestmark = pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock (util-linux)")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "run.sh", tmp_path / "run.sh")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("snakemake", STUB_SNAKEMAKE), ("python", STUB_PYTHON)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / ".venv" / ".stn-installed").touch()  # no pyproject.toml: nothing to install
    return tmp_path


def run(directory: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("STN_VENV", "PYTHON", "STN_TEST_WORKERS")}
    return subprocess.run(
        ["bash", "run.sh", *args], cwd=directory, capture_output=True, text=True, timeout=60, env=env
    )


def start(directory: Path, *args: str) -> subprocess.Popen:
    """``bash run.sh`` in the background, returned once the stub Snakemake holds its lock."""
    (directory / "hold").touch()
    process = subprocess.Popen(
        ["bash", "run.sh", *args], cwd=directory, start_new_session=True, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while not (directory / "started").exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the stub snakemake did not start"
        time.sleep(0.05)
    (directory / "started").unlink()
    return process


def calls(directory: Path) -> list[str]:
    path = directory / "calls.log"
    return path.read_text().splitlines() if path.exists() else []


def locks(directory: Path) -> list[str]:
    return sorted(p.name for p in (directory / ".snakemake" / "locks").glob("*"))


def test_plain_run_passes_arguments(workdir: Path) -> None:
    result = run(workdir, "--configfile", "config/paper.yaml")
    assert result.returncode == 0, result.stderr
    assert calls(workdir) == [
        "--cores all --configfile config/paper.yaml",
        "--report results/report.html --configfile config/paper.yaml",  # then the report
    ]
    assert "stale" not in result.stderr
    assert (workdir / ".snakemake" / "run.sh.lock").exists()


@pytest.mark.parametrize("option", ["-n", "--unlock", "--report=r.html", "--lint"])
def test_runs_that_run_nothing_make_no_report(workdir: Path, option: str) -> None:
    assert run(workdir, option).returncode == 0
    assert calls(workdir) == [f"--cores all {option}"]


def test_stale_lock_after_kill_9_is_removed(workdir: Path) -> None:
    first = start(workdir, "--configfile", "c.yaml")
    assert locks(workdir) == ["0.input.lock", "0.output.lock"]
    os.killpg(first.pid, signal.SIGKILL)  # the whole run dies at once, as on a power loss
    first.wait()
    assert locks(workdir) == ["0.input.lock", "0.output.lock"]  # left behind
    (workdir / "hold").unlink()
    result = run(workdir, "--configfile", "c.yaml")
    assert result.returncode == 0, result.stderr
    assert "removed a stale Snakemake lock left by an interrupted run" in result.stderr
    # the unlock gets the same arguments (the same config), and comes before the real run
    assert calls(workdir) == [
        "--cores all --configfile c.yaml",
        "--unlock --configfile c.yaml",
        "--cores all --configfile c.yaml",
        "--report results/report.html --configfile c.yaml",
    ]
    assert locks(workdir) == []


def test_second_concurrent_run_is_refused_and_changes_nothing(workdir: Path) -> None:
    first = start(workdir)
    try:
        before = calls(workdir)
        result = run(workdir)
        assert result.returncode != 0
        assert f"another run of this directory is active (pid {first.pid})" in result.stderr
        assert calls(workdir) == before  # no unlock, no second Snakemake
        assert locks(workdir) == ["0.input.lock", "0.output.lock"]
        assert first.poll() is None
    finally:
        (workdir / "hold").unlink()
        assert first.wait(timeout=30) == 0
    assert run(workdir).returncode == 0  # once the first has finished, the next one runs


def test_snakemake_started_by_hand_keeps_its_lock(workdir: Path) -> None:
    (workdir / "hold").touch()
    by_hand = subprocess.Popen([str(workdir / ".venv/bin/snakemake")], cwd=workdir, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (workdir / "started").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        result = run(workdir)
        assert result.returncode != 0
        assert f"Snakemake (pid {by_hand.pid}) is running in this directory outside run.sh" in result.stderr
        assert calls(workdir) == [""]  # only the one started by hand
        assert locks(workdir) == ["0.input.lock", "0.output.lock"]
    finally:
        (workdir / "hold").unlink()
        by_hand.wait(timeout=30)


def test_tests_take_no_lock(workdir: Path) -> None:
    first = start(workdir)
    try:
        result = run(workdir, "test", "-x")
        assert result.returncode == 0, result.stderr
        assert calls(workdir)[-1] == "python -m pytest -n auto --dist loadgroup -x"  # a worker per core
    finally:
        (workdir / "hold").unlink()
        first.wait(timeout=30)


@pytest.mark.parametrize("gpu", [False, True])
def test_install_asks_for_the_cpu_build_of_torch_only_without_a_gpu(workdir: Path, gpu: bool) -> None:
    (workdir / ".venv" / ".stn-installed").unlink()  # a new environment: the install runs
    env_path = os.environ["PATH"]
    if gpu:
        fake_bin = workdir / "fake-bin"
        fake_bin.mkdir()
        (fake_bin / "nvidia-smi").write_text("#!/bin/sh\n")
        (fake_bin / "nvidia-smi").chmod(0o755)
        env_path = f"{fake_bin}:{env_path}"
    elif shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    env = {k: v for k, v in os.environ.items() if k not in ("STN_VENV", "PYTHON", "STN_TORCH")}
    result = subprocess.run(
        ["bash", "run.sh", "test"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PATH": env_path},
    )
    assert result.returncode == 0, result.stderr
    installs = [c for c in calls(workdir) if c.startswith("python") and "pytest" not in c]
    chooser = ["python tools/cpu_torch.py"] if not gpu else []
    assert installs == [
        "python -m pip install --quiet --upgrade pip",
        *chooser,
        "python -m pip install --quiet -e .[test]",
    ]
    assert (workdir / ".venv" / ".stn-installed").exists()
