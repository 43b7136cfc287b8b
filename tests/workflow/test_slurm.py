"""The workflow on a real single-node SLURM cluster, through the project's slurm profile."""

from __future__ import annotations

import copy
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

from stn.io import load_torch, sha256sum
from stn.train_log import TIMING_COLUMNS, read_log
from tests.slurm_cluster import LocalSlurm
from tests.test_faults import DETERMINISTIC, FAULT_CONFIG, RUN, TARGET, saved_step
from tests.test_slurm_cluster import wait_for_sacct
from tests.workflow import warm_snakemake
from tests.workflow.test_workflow import ROOT, SNAKEMAKE, TINY, planned_jobs, snakemake, snakemake_command

# one worker runs them all under pytest-xdist (--dist loadgroup): they share one local cluster
pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]

CONFIG = copy.deepcopy(TINY) | {
    "tasks": {"R": TINY["tasks"]["R"]},
    "networks": ["CNN", "STN-C1"],  # runs of TINY's: the shared local run has them too
    "report": {"tables": {"mnist": {"tasks": ["R"]}}},
}
# the Snakefile's localrules
LOCAL_RULES = {"all", "download", "table", "depth_figure", "rotation_report", "provenance"}
LOCAL_RULES |= {"training_figure", "stability"}


# Snakemake through the project's profile on the test cluster
ON_SLURM = (
    "--profile",
    str(ROOT / "profiles" / "slurm"),
    "--set-resources",
    "train:gpu=0",  # the test node has no GPU
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--latency-wait",
    "5",
)


POLLING = Path(__file__).with_name("slurm_polling.py")


def cluster_command(directory: Path, config: dict, *args: str) -> list[str]:
    """``snakemake_command`` through the profile, with status checks at most 2 s apart (slurm_polling)."""
    command = snakemake_command(directory, config, *ON_SLURM, *args)
    assert command[: len(SNAKEMAKE)] == SNAKEMAKE
    return [sys.executable, str(POLLING), *command[3:]]


def cluster_env(slurm: LocalSlurm) -> dict[str, str]:
    """The environment of Snakemake on the test cluster's login node (which is also its node)."""
    env = slurm.env()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # jobs inherit it (sbatch --export=ALL)
    return env | {"STN_SLURM_ACCOUNT": slurm.account, "STN_SLURM_PARTITION": slurm.partition}


def results(directory: Path) -> dict[str, float]:
    return {
        str(path.relative_to(directory)): json.loads(path.read_text())["test_error"]
        for path in sorted(directory.glob("results/runs/*/*/*/metrics.json"))
    }


def test_workflow_on_slurm_equals_local_run(slurm, tiny_run, tmp_path):
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    plan = planned_jobs(cluster, CONFIG)
    expected_jobs = sum(count for rule, count in plan.items() if rule not in LOCAL_RULES)

    command = cluster_command(cluster, CONFIG)
    run = slurm.run(command, check=False, cwd=cluster, env=cluster_env(slurm), timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]

    jobids = re.findall(r"submitted with SLURM jobid (\d+)", log)
    assert len(jobids) == expected_jobs, log[-3000:]
    assert "localrule table:" in log  # the table is made where Snakemake runs, not through sbatch
    rows = wait_for_sacct(slurm, jobids, "Account,Partition", timeout=60)
    assert {row[0] for row in rows.values()} == {"COMPLETED"}
    assert {(row[1], row[2]) for row in rows.values()} == {(slurm.account, slurm.partition)}
    assert list((cluster / "logs" / "slurm").rglob("*.log")), "sbatch logs are kept under logs/slurm"

    # the same runs as the local run of TINY (same run configs), to the bit
    on_cluster = results(cluster)
    assert sorted(on_cluster) == [
        f"results/runs/R/{network}/seed0/metrics.json" for network in ("CNN", "STN-C1")
    ]
    assert on_cluster == {run: error for run, error in results(tiny_run).items() if run in on_cluster}
    assert "STN-C1" in (cluster / "results/tables/mnist.csv").read_text()


def test_paper_dry_run_asks_one_gpu_per_training_job(tmp_path):
    config = ROOT / "config" / "paper.yaml"
    command = [
        *SNAKEMAKE,
        "--directory",
        str(ROOT),
        "--configfile",
        str(config),
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--dry-run",
    ]
    out = warm_snakemake.run(command, ROOT)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    jobs = re.findall(r"\nrule (\w+):\n(.*?)\n\n", text, re.DOTALL)
    trains = [body for rule, body in jobs if rule == "train"]
    assert len(trains) == 3 * 8 * 3  # 5 networks of table 1 and 3 oracles; 3 tasks, 3 seeds
    assert all(re.search(r"resources: .*\bgpu=1\b", body) for body in trains)
    others = [body for rule, body in jobs if rule in ("evaluate", "table", "test_set")]
    assert others and not any(re.search(r"\bgpu=", body) for body in others)


# Faults of a cluster (issue 23): one run, trained long enough (a few seconds in its job) to be caught
# between its first saved state and its end, and compared with the same run made locally.
FAULT_STEPS, FAULT_EVERY = 800, 20
SLURM_FAULT = copy.deepcopy(FAULT_CONFIG)
SLURM_FAULT["train"] |= {"iterations": FAULT_STEPS, "checkpoint_every": FAULT_EVERY}
MODEL, TRAIN_LOG, RUN_LOG = RUN / "model.pt", RUN / "train_log.csv", Path("logs/train/R/CNN/seed0.log")


@pytest.fixture(scope="module")
def fault_local_run(tmp_path_factory) -> Path:
    """The run of ``SLURM_FAULT`` made by Snakemake without SLURM, uninterrupted."""
    directory = tmp_path_factory.mktemp("fault-local-run")
    snakemake(directory, SLURM_FAULT, TARGET)
    return directory


def cluster_dir(tmp_path: Path, local_run: Path) -> Path:
    """A workflow directory with the local run's prepared data and test set (their jobs are not the
    faults tested, and through sbatch each costs half a minute)."""
    directory = tmp_path / "cluster"
    shutil.copytree(local_run / "resources", directory / "resources")
    return directory


def start_snakemake(directory: Path, env: dict[str, str], log: str, *args: str) -> subprocess.Popen:
    """Snakemake of ``SLURM_FAULT``'s run on the cluster, in its own process group, output to ``log``."""
    command = cluster_command(directory, SLURM_FAULT, *args, TARGET)
    with open(directory / log, "w") as out:
        return subprocess.Popen(
            command, cwd=directory, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen) -> None:
    """SIGKILL ``process``'s whole group if it still runs, and reap it."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def succeeded(process: subprocess.Popen, log: Path) -> str:
    """The log of ``process``, which ended successfully."""
    text = log.read_text()
    assert process.returncode == 0, text[-5000:]
    return text


def running_train_job(slurm: LocalSlurm) -> str | None:
    """The SLURM id of the training job that runs now, if any."""
    listed = slurm.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"]).stdout
    jobs = [line.split("|") for line in listed.split()]
    return next((job for job, comment in jobs if comment.startswith("rule_train")), None)


def wait(what: str, predicate, process: subprocess.Popen | None = None, timeout: float = 120.0):
    """Poll ``predicate`` until it returns a true value; fail after ``timeout`` or if ``process`` ends."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert process is None or process.poll() is None, f"Snakemake ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.005)
    return result


def equals_local_run(directory: Path, local_run: Path) -> None:
    """The run's metrics, weights and training log equal the local run's, to the bit."""
    metrics, expected = (json.loads((d / TARGET).read_text()) for d in (directory, local_run))
    assert {k: metrics[k] for k in DETERMINISTIC} == {k: expected[k] for k in DETERMINISTIC}
    assert metrics["steps"] == FAULT_STEPS
    trained, reference = (load_torch(d / MODEL)["model"] for d in (directory, local_run))
    assert trained.keys() == reference.keys()
    assert all(torch.equal(trained[key], value) for key, value in reference.items())
    rows, expected_rows = (read_log(d / TRAIN_LOG) for d in (directory, local_run))
    assert [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows] == [
        {k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in expected_rows
    ]


def train_jobs(log: str) -> list[str]:
    """The SLURM ids of the training jobs a Snakemake log says it submitted, in order."""
    return re.findall(r"submitted with SLURM jobid (\d+) \(log: [^)]*/rule_train/", log)


def test_a_cancelled_training_job_is_resubmitted_and_resumes_from_its_saved_state(
    slurm, fault_local_run, tmp_path
):
    """``scancel`` of a training job after its first saved state (as preemption, a time limit or a
    failed node would end it): the profile's ``retries: 1`` submits it again, and it goes on from the
    state it found, to the local run's results."""
    directory = cluster_dir(tmp_path, fault_local_run)
    # profiles/slurm asks squeue for job states: sacct's `CANCELLED by <uid>` after a scancel is
    # taken for a running job by plugin 2.8.0, and Snakemake would wait for it for ever
    process = start_snakemake(directory, cluster_env(slurm), "snakemake.log")
    try:
        wait("saved state", lambda: saved_step(directory), process)
        cancelled = wait("running training job", lambda: running_train_job(slurm), process)
        slurm.run(["scancel", cancelled])
        wait("end of the cancelled job", lambda: running_train_job(slurm) != cancelled)
        assert not (directory / MODEL).exists(), "cancelled after training, not during it"
        state = saved_step(directory)
        steps = [state]  # every step saved on disk from then on, in order
        while process.poll() is None:
            if (saved := saved_step(directory)) not in (None, steps[-1]):
                steps.append(saved)
            time.sleep(0.005)
    finally:
        stop(process)
    log = succeeded(process, directory / "snakemake.log")

    jobs = train_jobs(log)
    assert len(jobs) == 2 and jobs[0] == cancelled, log[-5000:]
    states = {job: row[0] for job, row in wait_for_sacct(slurm, jobs, "JobName", timeout=60).items()}
    assert states[jobs[0]].startswith("CANCELLED") and states[jobs[1]] == "COMPLETED", states
    # the second job's progress bar starts at the step of the state the first one left (tqdm prints
    # the run's first step as soon as it begins): it resumed, and its saved steps only went up
    resumed = re.search(r"\| *(\d+)/" + str(FAULT_STEPS) + r" \[", text(directory / RUN_LOG))
    assert resumed and int(resumed[1]) == state >= FAULT_EVERY, (state, text(directory / RUN_LOG))
    assert steps == sorted(steps) and len(set(steps)) == len(steps), steps
    equals_local_run(directory, fault_local_run)


def text(path: Path) -> str:
    """The text of a log that may not exist yet (and that two processes may write: not UTF-8 then)."""
    try:
        return path.read_text("utf-8", "replace")
    except FileNotFoundError:
        return ""


def lock_holder(directory: Path) -> str | None:
    """Who holds the run's lock, as its holder wrote it (``pid N on host H since T``), if anyone."""
    try:
        return (directory / MODEL).with_name("model.pt.lock").read_text().strip() or None
    except FileNotFoundError:
        return None


def settled_step(directory: Path, quiet: float = 1.0, timeout: float = 30.0) -> int | None:
    """The saved step once it has not changed for ``quiet`` seconds: ``scontrol suspend`` returns
    before the job's processes are stopped, so a state write may still land just after it."""
    deadline = time.monotonic() + timeout
    step, since = saved_step(directory), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"the saved step still changes after {timeout:.0f} s"
        time.sleep(0.05)
        if (now := saved_step(directory)) != step:
            step, since = now, time.monotonic()
    return step


def checkpoint(directory: Path) -> tuple[int, str]:
    """The run's checkpoint's inode and SHA-256 (a new write, atomic by rename, changes the inode)."""
    return (directory / MODEL).stat().st_ino, sha256sum(directory / MODEL)


def test_a_restarted_snakemake_never_trains_a_run_twice_at_once(slurm, fault_local_run, tmp_path):
    """Snakemake on the login node is killed (SIGKILL of its process group: a dropped ssh session)
    while the training job runs in SLURM; the user follows its messages: the same command reports a
    lock, ``--unlock``, the same command again (the profile has ``rerun-incomplete``). That submits
    the run again while its first job still trains: the new copy waits for the first's lock, naming
    its pid and host, then finds the run finished. (The first job is held with ``scontrol suspend``
    until its copy is seen waiting, as a long training would be still running.)"""
    directory = cluster_dir(tmp_path, fault_local_run)
    env = cluster_env(slurm)
    command = cluster_command(directory, SLURM_FAULT, TARGET)
    killed = start_snakemake(directory, env, "killed.log")
    try:
        wait("saved state", lambda: saved_step(directory), killed)
        first = wait("running training job", lambda: running_train_job(slurm), killed)
        holder = wait("lock holder", lambda: lock_holder(directory), killed)
    finally:
        stop(killed)  # the whole process group, as when its ssh session drops
    slurm.run(["scontrol", "suspend", first])
    assert train_jobs((directory / "killed.log").read_text()) == [first]
    assert slurm.run(["squeue", "-h", "-j", first, "-o", "%T"]).stdout.split() == ["SUSPENDED"]
    steps = [settled_step(directory)]  # the steps saved on disk, in order

    locked = slurm.run(command, check=False, cwd=directory, env=env, timeout=120)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr, locked.stderr[-3000:]
    unlocked = slurm.run([*command, "--unlock"], check=False, cwd=directory, env=env, timeout=120)
    assert unlocked.returncode == 0, unlocked.stderr[-3000:]
    restarted = start_snakemake(directory, env, "restarted.log")
    try:
        waiting = f"is held by {holder}, which trains this run: waiting"
        wait("copy waiting for the lock", lambda: waiting in text(directory / RUN_LOG), restarted)
        assert lock_holder(directory) == holder and saved_step(directory) == steps[0]  # untouched
        slurm.run(["scontrol", "resume", first])
        holders = [holder]  # every holder of the lock, in order
        written = None  # the checkpoint's inode and content when it first appeared
        while restarted.poll() is None:
            if (saved := saved_step(directory)) not in (None, steps[-1]):
                steps.append(saved)
            if (now := lock_holder(directory)) not in (None, holders[-1]):
                holders.append(now)
            if written is None and (directory / MODEL).exists():
                written = checkpoint(directory)
            time.sleep(0.005)
    finally:
        stop(restarted)
    log = succeeded(restarted, directory / "restarted.log")

    second = train_jobs(log)
    assert len(second) == 1 and second != [first], log[-5000:]
    rows = wait_for_sacct(slurm, [first, *second], "Start,End", timeout=60)
    assert {row[0] for row in rows.values()} == {"COMPLETED"}, rows
    assert rows[second[0]][1] < rows[first][2], rows  # the copy ran while the first job trained
    # the lock went from the first job to its copy and never back; the copy trained no step: the
    # first job's checkpoint is the one left, and no state was saved after it
    assert holders[0] == holder and len(holders) <= 2 and len(set(holders)) == len(holders), holders
    assert written == checkpoint(directory)  # (Snakemake touches it after the copy's job: not its mtime)
    assert steps == sorted(steps) and len(set(steps)) == len(steps), steps
    equals_local_run(directory, fault_local_run)
