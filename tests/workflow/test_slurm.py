"""The workflow on a real single-node SLURM cluster, through the project's slurm profile."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import pytest

from tests.test_slurm_cluster import wait_for_sacct
from tests.workflow.test_workflow import ROOT, SNAKEMAKE, TINY, planned_jobs, snakemake_command

pytestmark = pytest.mark.slurm

CONFIG = copy.deepcopy(TINY) | {
    "tasks": {"R": TINY["tasks"]["R"]},
    "networks": ["CNN", "STN-C1"],  # runs of TINY's: the shared local run has them too
    "report": {"tables": {"mnist": {"tasks": ["R"]}}},
}
# the Snakefile's localrules
LOCAL_RULES = {"all", "download", "table", "depth_figure", "rotation_report", "provenance"}
LOCAL_RULES |= {"training_figure", "stability"}


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

    env = slurm.env()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # jobs inherit it (sbatch --export=ALL)
    env |= {"STN_SLURM_ACCOUNT": slurm.account, "STN_SLURM_PARTITION": slurm.partition}
    command = snakemake_command(
        cluster,
        CONFIG,
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--set-resources",
        "train:gpu=0",  # the test node has no GPU
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--latency-wait",
        "5",
    )
    run = slurm.run(command, check=False, cwd=cluster, env=env, timeout=600)
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
    import subprocess

    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    jobs = re.findall(r"\nrule (\w+):\n(.*?)\n\n", text, re.DOTALL)
    trains = [body for rule, body in jobs if rule == "train"]
    assert len(trains) == 3 * 8 * 3  # 5 networks of table 1 and 3 oracles; 3 tasks, 3 seeds
    assert all(re.search(r"resources: .*\bgpu=1\b", body) for body in trains)
    others = [body for rule, body in jobs if rule in ("evaluate", "table", "test_set")]
    assert others and not any(re.search(r"\bgpu=", body) for body in others)
