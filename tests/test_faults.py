"""Fault injection: each fault costs at most the work it interrupted or damaged, never a finished
result, and the final metrics equal those of an uninterrupted run.

- a damaged resume state (``model.pt.state``): that run is recomputed;
- a damaged fixed test set: a clear error naming it and how to regenerate it, which gives the same
  metrics;
- kill -9 of the whole workflow at three points of training, each followed by ``bash run.sh``.
- a full disk while a resume state is written: a clear error, the previous state kept, and the
  same command resumes once there is space.

(A damaged checkpoint: test_damaged_checkpoint_names_the_file_and_how_to_retrain_it in
tests/test_training.py; a second concurrent run and a stale lock: tests/test_run_sh.py; truncated
and killed downloads: tests/data/test_download.py; two trainers of one run: tests/test_run_lock.py;
a full disk under each kind of file: tests/test_io.py.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import stn.training
from stn.evaluation import evaluate, prepare_test_set
from stn.io import DamagedFileError, digest_path, load_torch, load_torch_verified, sha256sum
from stn.train_log import TIMING_COLUMNS, read_log
from stn.training import state_path, train
from tests.conftest import copy_checkout, tiny_config

ROOT = Path(__file__).resolve().parents[1]


class Interrupted(Exception):
    pass


def interrupt_at(monkeypatch, stop: int) -> None:
    """Make training stop (like a crash) when it reaches step ``stop`` (each step draws its seed)."""
    original = stn.training._step_seed

    def step_seed(seed, step):
        if step == stop:
            raise Interrupted(step)
        return original(seed, step)

    monkeypatch.setattr(stn.training, "_step_seed", step_seed)


def truncate(path, size=1000):
    with open(path, "r+b") as handle:
        handle.truncate(size)


def flip_a_weight_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the tensor data: torch itself would load it
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, flip_a_weight_byte])
def test_damaged_resume_state_is_recomputed(tmp_path, monkeypatch, capsys, damage):
    config = tiny_config()  # 12 steps, state saved every 4
    train(config, tmp_path / "reference.pt", progress=False)
    finished = tmp_path / "finished.pt"  # another run of the same directory, already done
    train(tiny_config(seed=1), finished, progress=False)
    kept = {p.name: p.read_bytes() for p in (finished, digest_path(finished))}

    checkpoint = tmp_path / "model.pt"
    with monkeypatch.context() as patch:
        interrupt_at(patch, 10)
        with pytest.raises(Interrupted):
            train(config, checkpoint, progress=False)
    state = state_path(checkpoint)
    assert load_torch(state)["step"] == 8 and not checkpoint.exists()
    damage(state)
    capsys.readouterr()

    train(config, checkpoint, progress=False)
    warning = capsys.readouterr().err
    assert f"warning: {state} " in warning and "Starting this run afresh" in warning
    reference = load_torch(tmp_path / "reference.pt")["model"]
    for key, value in load_torch(checkpoint)["model"].items():
        assert torch.equal(value, reference[key]), key  # the same weights as an uninterrupted run
    assert not state.exists() and not digest_path(state).exists()
    assert {p.name: p.read_bytes() for p in (finished, digest_path(finished))} == kept


def garbage(path):
    path.write_bytes(os.urandom(path.stat().st_size))


@pytest.mark.parametrize("damage", [truncate, garbage, flip_a_weight_byte])
def test_damaged_test_set_names_the_file_and_regenerating_it_gives_the_same_metrics(tmp_path, damage):
    config = tiny_config()
    checkpoint, test_set = tmp_path / "model.pt", tmp_path / "test_sets" / "R.pt"
    train(config, checkpoint, progress=False)
    prepare_test_set(config, test_set)
    assert digest_path(test_set).read_text() == f"{sha256sum(test_set)}  R.pt\n"  # `sha256sum -c` reads it
    metrics = tmp_path / "metrics.json"
    expected = evaluate(checkpoint, test_set, metrics, device="cpu")
    finished = {p: p.read_bytes() for p in (checkpoint, digest_path(checkpoint), metrics)}

    damage(test_set)
    with pytest.raises(DamagedFileError) as info:
        evaluate(checkpoint, test_set, metrics, device="cpu")
    message = str(info.value)
    assert message.startswith(f"{test_set} is damaged: its SHA-256 is {sha256sum(test_set)}")
    assert f"`rm {test_set}`" in message and f"--forcerun {test_set}" in message
    assert {p: p.read_bytes() for p in finished} == finished  # nothing finished was touched
    if damage is not flip_a_weight_byte:  # without its record (older versions): still by name
        digest_path(test_set).unlink()
        with pytest.raises(DamagedFileError, match=f"{re.escape(str(test_set))} cannot be read"):
            evaluate(checkpoint, test_set, device="cpu")

    test_set.unlink()  # the remedy: regenerated from its seed, the same test set and metrics
    prepare_test_set(config, test_set)
    again = evaluate(checkpoint, test_set, device="cpu")
    assert {k: again[k] for k in DETERMINISTIC} == {k: expected[k] for k in DETERMINISTIC}


# kill -9 of the real workflow at three points of training, each time followed by `bash run.sh`.

FAULT_STEPS, FAULT_EVERY = 150, 10
FAULT_CONFIG = {
    "datasets": {"mnist": {"source": "embedded"}},
    "tasks": {"R": {"dataset": "mnist", "canvas": 28, "rotation": 90}},
    "networks": ["CNN"],
    "seeds": [0],
    "device": "cpu",
    "backbones": {
        "mnist": {"name": "mnist", "args": {"channels": [4, 6], "loc_channels": 4, "loc_hidden": 6}}
    },
    "train": {"batch_size": 32, "epochs": None, "iterations": FAULT_STEPS, "checkpoint_every": FAULT_EVERY},
    "report": {"tables": {"faults": {"tasks": ["R"]}}},
    "resources": {"train_gpus": 0, "train_threads": 1},
}
RUN = Path("results/runs/R/CNN/seed0")
TARGET = str(RUN / "metrics.json")  # the run's metrics only: no tables or figures to make
TEST_SET = Path("resources/test_sets/R.pt")
# every metric that does not measure time: an uninterrupted run gives the same
DETERMINISTIC = ("network", "task", "seed", "test_error", "test_size", "rotation_undone", "pose_spread")
DETERMINISTIC += ("steps", "final_loss", "config")


@pytest.fixture
def workflow_dir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A directory with run.sh, a virtual environment that is the current one, and the config,
    and the environment to run it in: Snakemake runs a copy of the workflow and package (so edits
    to the checkout while this runs change nothing here)."""
    snakemake = Path(sys.executable).with_name("snakemake")
    if not snakemake.exists():
        snakemake = Path(shutil.which("snakemake") or pytest.skip("snakemake is not installed"))
    repo, directory = tmp_path / "repo", tmp_path / "run"
    copy_checkout(repo, ("Snakefile", "environment.yml", "workflow", "stn", "profiles"))
    directory.mkdir()
    shutil.copy(ROOT / "run.sh", directory / "run.sh")
    (directory / ".venv" / "bin").mkdir(parents=True)
    (directory / ".venv" / "bin" / "snakemake").symlink_to(snakemake)
    (directory / ".venv" / ".stn-installed").touch()  # no pyproject.toml here: nothing to install
    (directory / "config.yaml").write_text(yaml.safe_dump(FAULT_CONFIG))
    env = {k: v for k, v in os.environ.items() if k not in ("STN_VENV", "PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])
    return directory, env


def start_run(directory: Path, env: dict[str, str], log: str) -> subprocess.Popen:
    """``bash run.sh`` of the tiny config in its own process group, output to ``log``."""
    args = [
        TARGET,
        "--snakefile",
        str(directory.parent / "repo" / "Snakefile"),
        "--configfile",
        "config.yaml",
    ]
    with open(directory / log, "w") as out:
        return subprocess.Popen(
            ["bash", "run.sh", *args], cwd=directory, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def saved_step(directory: Path) -> int | None:
    """The step of the resume state on disk (written atomically), None when there is none."""
    try:
        return load_torch(state_path(directory / RUN / "model.pt"))["step"]
    except FileNotFoundError:
        return None


def kill_when_saved(directory: Path, process: subprocess.Popen, step: int, log: str) -> tuple[int, list[int]]:
    """SIGKILL ``process``'s whole group once training has saved ``step`` or later; returns the
    step saved then and the earlier steps seen on disk. Fails if the training finishes first."""
    deadline = time.monotonic() + 240
    seen = []
    while (saved := saved_step(directory)) is None or saved < step:
        if saved is not None:
            seen.append(saved)
        assert process.poll() is None, f"the run ended before step {step}:\n{(directory / log).read_text()}"
        assert time.monotonic() < deadline, f"no state of step {step} saved in time"
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)  # the whole run at once: power loss, OOM killer
    process.wait()
    while True:  # every process of the group is gone (none trains on unseen)
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "processes of the killed run survive"
        time.sleep(0.01)
    assert not (directory / RUN / "model.pt").exists(), "killed after training, not during it"
    return saved_step(directory), seen


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("flock") is None, reason="run.sh recovers stale locks with flock (util-linux)"
)
def test_kill_9_at_three_points_of_training_then_run_sh_again(workflow_dir) -> None:
    directory, env = workflow_dir
    # kill after the first saved state, mid-way and near the end; rerun `bash run.sh` each time
    kills = []
    test_set = directory / TEST_SET
    finished = {}  # outputs already complete when a run is killed: never redone or changed
    for attempt, step in enumerate((FAULT_EVERY, FAULT_STEPS // 2, FAULT_STEPS - 2 * FAULT_EVERY)):
        log = f"run{attempt}.log"
        process = start_run(directory, env, log)
        saved, seen = kill_when_saved(directory, process, step, log)
        text = (directory / log).read_text()
        if attempt:  # run.sh itself removed the lock the killed Snakemake left
            assert "removed a stale Snakemake lock left by an interrupted run" in text, text
            assert min(seen, default=kills[-1]) >= kills[-1], (seen, kills)  # resumed, not afresh
        assert list((directory / ".snakemake" / "locks").iterdir()), "a killed Snakemake leaves its lock"
        kills.append(saved)
        for path, (content, mtime) in finished.items():
            assert (path.read_bytes(), path.stat().st_mtime_ns) == (content, mtime), path
        # finished: Snakemake recorded it (one killed between writing and recording redoes it)
        if re.search(r"Finished jobid: \d+ \(Rule: test_set\)", text) and not finished:
            finished = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (test_set, digest_path(test_set))}
    assert kills[0] >= FAULT_EVERY and kills[0] < kills[1] < kills[2] < FAULT_STEPS, kills

    process = start_run(directory, env, "final.log")
    assert process.wait(timeout=300) == 0, (directory / "final.log").read_text()
    text = (directory / "final.log").read_text()
    assert "removed a stale Snakemake lock left by an interrupted run" in text
    assert "localrule train:" in text and ("localrule test_set:" in text) == (not finished)
    assert (directory / "results" / "report.html").exists()
    for path, (content, mtime) in finished.items():
        assert (path.read_bytes(), path.stat().st_mtime_ns) == (content, mtime), path
    state = state_path(directory / RUN / "model.pt")
    assert not state.exists() and not digest_path(state).exists()  # the resume state is cleaned up
    for path in (directory / RUN / "model.pt", directory / TEST_SET):  # whole, as recorded
        assert digest_path(path).read_text().split()[0] == sha256sum(path), path
    metrics = json.loads((directory / TARGET).read_text())
    assert metrics["steps"] == FAULT_STEPS

    # an uninterrupted run of the same run config, here in one process, gives the same
    reference = directory / "reference"
    threads = torch.get_num_threads()
    torch.set_num_threads(FAULT_CONFIG["resources"]["train_threads"])  # as the train job
    try:
        train(metrics["config"], reference / "model.pt", progress=False)
    finally:
        torch.set_num_threads(threads)
    prepare_test_set(metrics["config"], reference / "test.pt")
    expected = evaluate(reference / "model.pt", reference / "test.pt", device="cpu")
    assert {k: metrics[k] for k in DETERMINISTIC} == {k: expected[k] for k in DETERMINISTIC}
    trained = load_torch(directory / RUN / "model.pt")["model"]
    for key, value in load_torch(reference / "model.pt")["model"].items():
        assert torch.equal(value, trained[key]), key
    # and the same training log, row for row: the rows of each killed attempt after its saved
    # state were dropped and recomputed (only the times differ)
    logged, expected_log = read_log(directory / RUN / "train_log.csv"), read_log(reference / "train_log.csv")
    assert len(logged) == len(expected_log) == FAULT_STEPS  # the default: a row a step at this length
    for ours, theirs in zip(logged, expected_log, strict=True):
        assert {k: v for k, v in ours.items() if k not in TIMING_COLUMNS} == {
            k: v for k, v in theirs.items() if k not in TIMING_COLUMNS
        }


# A full disk, simulated by a file-size limit: `python -m stn train`, whose saves of the resume
# state report their step; with "fill", after the first one no file can grow beyond half its size.
TRAIN_ON_A_FILLING_DISK = """
import os, resource, runpy, signal, sys
import stn.io

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
save, fill = stn.io.save_torch_verified, sys.argv.pop(1) == "fill"

def save_and_report(obj, path):
    save(obj, path)
    if str(path).endswith(".state"):
        print(f"saved step {obj['step']} ({os.path.getsize(path)} bytes)", file=sys.stderr, flush=True)
        if fill:
            limit = os.path.getsize(path) // 2
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

stn.io.save_torch_verified = save_and_report  # before stn.training imports it
sys.argv[0] = "python -m stn"
runpy.run_module("stn", run_name="__main__")
"""


def test_a_full_disk_keeps_the_last_state_says_why_and_the_same_command_resumes(tmp_path) -> None:
    config = tiny_config(train={"batch_size": 32, "epochs": None, "iterations": 60, "checkpoint_every": 20})
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    checkpoint, state = run / "model.pt", state_path(run / "model.pt")
    args = ["train", "--config", str(tmp_path / "run.yaml"), "--checkpoint", str(checkpoint), "--quiet"]

    def train_on_disk(how: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-c", TRAIN_ON_A_FILLING_DISK, how, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    full = train_on_disk("fill")  # the state of step 20 is saved, then the disk is full
    assert full.returncode == 1 and full.stderr.startswith("saved step 20 ("), full.stderr
    error = full.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: [Errno 27] {state} could not be written: File too large")  # no traceback
    assert f"Free space on the file system of {run} " in error and "run the same command again" in error
    assert load_torch_verified(state)["step"] == 20  # the previous state, whole
    names = {p.name for p in run.iterdir()}
    assert {state.name, digest_path(state).name} <= names and checkpoint.name not in names
    assert not [name for name in names if name.startswith(".")]  # no temporary file left

    freed = train_on_disk("freed")  # the same command, with space
    assert freed.returncode == 0, freed.stderr
    assert freed.stderr.startswith("saved step 40 ("), freed.stderr  # resumed from step 20
    needed = int(re.search(r"\(it needs (\d+) bytes, \d+ bytes are free there\)", error).group(1))
    written = int(re.search(r"saved step 40 \((\d+) bytes\)", freed.stderr).group(1))
    assert abs(needed - written) < written / 100, (needed, written)  # the size of the state of step 40
    train(config, tmp_path / "reference" / "model.pt", progress=False)
    reference, trained = load_torch(tmp_path / "reference" / "model.pt"), load_torch(checkpoint)
    for key, value in reference["model"].items():
        assert torch.equal(value, trained["model"][key]), key  # the weights of an uninterrupted run
    assert not state.exists() and load_torch_verified(checkpoint)["train_stats"]["steps"] == 60
