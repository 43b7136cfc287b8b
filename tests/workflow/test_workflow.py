"""The Snakemake workflow: dry runs, an end-to-end run, incremental reruns, config errors, lint."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import copy_checkout
from tests.workflow import warm_snakemake

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]

TINY = {
    "datasets": {"mnist": {"source": "embedded"}},
    "tasks": {
        "R": {"dataset": "mnist", "canvas": 28, "rotation": 90},
        "S": {"dataset": "mnist", "canvas": 32, "log2_scale": [-0.5, 0.2], "clutter": 1},
    },
    "networks": ["CNN", "STN-C0", "STN-C1"],
    "seeds": [0],
    "backbones": {
        "mnist": {"name": "mnist", "args": {"channels": [4, 6], "loc_channels": 4, "loc_hidden": 6}}
    },
    "train": {"batch_size": 32, "epochs": None, "iterations": 3, "checkpoint_every": 2},
    "report": {
        "alignment": {"networks": ["STN-C0", "STN-C1"], "digits": 1, "angles": [0, 90], "scales": [1]},
        "tables": {
            "mnist": {"tasks": ["R", "S"], "contrasts": [["CNN", "STN-C1"]]},
            "mnist_oracle": {"tasks": ["R"], "networks": ["CNN", "STN-C0-oracle", "STN-C1-oracle"]},
        },
        "depth_figures": ["mnist_oracle"],
        "proof": {"digits": 2, "channels": 2},
    },
    "resources": {"train_gpus": 0},
    "overrides": {"STN-C0": {"train": {"lr": 1.0e4}}},  # forced to diverge: recorded, not a result
}


def write_config(directory: Path, config: dict) -> Path:
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake_command(directory: Path, config: dict, *args: str) -> list[str]:
    """Snakemake on the repository's workflow, in ``directory``, with ``config`` as its only config."""
    return [
        *SNAKEMAKE,
        "--directory",
        str(directory),
        "--configfile",
        str(write_config(directory, config)),
        *args,
    ]


def snakemake(directory: Path, config: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = snakemake_command(directory, config, "--cores", "2", *args)
    result = warm_snakemake.run(command, directory)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def planned_jobs(directory: Path, config: dict, *args: str) -> dict[str, int]:
    """Rule name -> number of jobs a dry run would execute."""
    result = snakemake(directory, config, "--dry-run", "--quiet", "rules", *args)
    return jobs_of_dry_run(result.stdout + result.stderr)


def jobs_of_dry_run(text: str) -> dict[str, int]:
    """Rule name -> number of jobs in the output of ``snakemake --dry-run --quiet rules``."""
    if "Nothing to be done" in text:
        return {}
    table = text[text.index("job ") :]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE) if m[1] != "total"}


def slurm_plan(directory: Path, config_name: str) -> tuple[dict, dict[str, int], list[str]]:
    """A dry run of ``config/<config_name>.yaml`` under the SLURM profile: the experiment, rule
    name -> planned jobs, and the planned train jobs' descriptions."""
    experiment = yaml.safe_load((ROOT / "config" / f"{config_name}.yaml").read_text())
    result = snakemake(directory, experiment, "--dry-run", "--profile", str(ROOT / "profiles" / "slurm"))
    text = result.stdout + result.stderr
    stats = text[text.index("Job stats") :]
    jobs = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE) if m[1] != "total"}
    train = [b for b in re.split(r"\n\n", text) if re.search(r"^rule train:", b, re.MULTILINE)]
    return experiment, jobs, train


ORACLE_RUNS = 2  # STN-C0-oracle and STN-C1-oracle on R; the table's CNN runs anyway


def test_dry_run_plans_exactly_the_expected_jobs(tmp_path):
    jobs = planned_jobs(tmp_path, TINY)
    runs = len(TINY["tasks"]) * len(TINY["networks"]) * len(TINY["seeds"]) + ORACLE_RUNS
    assert jobs == {
        "prepare_data": 1,
        "test_set": 2,
        "train": runs,
        "evaluate": runs,
        "table": 2,
        "training_figure": 2,
        "stability": 1,  # mnist_oracle has no learned transformer
        "provenance": 1,
        "depth_figure": 1,
        "alignment_figure": 1,
        "angle_figure": 1,
        "proof_figure": 1,
        "all": 1,
    }
    bigger = copy.deepcopy(TINY) | {"seeds": [0, 1, 2]}
    assert planned_jobs(tmp_path, bigger)["train"] == 3 * runs
    # a table's own seeds on one task: its rows on that task get the extra seeds, nothing else
    oracle_seeds = copy.deepcopy(TINY)
    oracle_seeds["report"]["tables"]["mnist_oracle"]["seeds"] = {"R": [0, 1, 2]}
    rows = len(TINY["report"]["tables"]["mnist_oracle"]["networks"])  # CNN and two oracles
    assert planned_jobs(tmp_path, oracle_seeds)["train"] == runs + 2 * rows


def test_default_and_paper_configs_plan_every_run(tmp_path):
    # table 1: 5 networks; the oracle table: 3 more (CNN is shared); 3 tasks; 2 or 3 seeds; the
    # default's oracle table has a third seed on R for its CNN and three oracles
    for name, runs in [
        ("config.yaml", 3 * 8 * 2 + 4),
        ("paper.yaml", 3 * 8 * 3),
        ("gpu-quick.yaml", 1 * 8 * 2),
    ]:
        config = yaml.safe_load((ROOT / "config" / name).read_text())
        jobs = planned_jobs(tmp_path, config)
        assert jobs["train"] == runs and jobs["evaluate"] == runs, name


def test_runs_per_gpu_sets_each_training_jobs_share_of_a_gpu(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "gpu-quick.yaml").read_text())
    result = snakemake(tmp_path, config, "--dry-run", "--profile", str(ROOT / "profiles" / "gpu"))
    shares = set(re.findall(r"gpu_percent=(\d+)", result.stdout + result.stderr))
    assert shares == {"25"}  # four runs share the GPU the profile caps at 100


def report_change(**settings) -> dict:
    return {"report": {**TINY["report"], **settings}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"netwroks": ["CNN"]}, "netwroks"),
        ({"seeds": "zero"}, "seeds"),
        ({"networks": ["CNN", "STN-Q1"]}, "STN-Q1"),
        (report_change(tables={"x": {"tasks": ["R"], "networks": ["STN-SL1-oracle"]}}), "STN-SL1-oracle"),
        (report_change(tables={"x": {"tasks": ["R"], "contrasts": [["CNN", "X"]]}}), "not rows of the table"),
        (report_change(depth_figures=["nothing"]), "unknown tables"),
        (report_change(tables={"x": {"tasks": ["R"], "seeds": {"S": [0, 1]}}}), "are not tasks of the table"),
        ({"train": {"lr": "fast"}}, "train.lr"),
        ({"tasks": {**TINY["tasks"], "R": {"dataset": "mnist", "canvas": 20}}}, "task.canvas"),
        ({"tasks": {**TINY["tasks"], "R": {"dataset": "mnist", "shear": 5}}}, "('shear' was unexpected)"),
        ({"datasets": {"mnist": {"splits": ["train"]}}}, "('splits' was unexpected)"),  # SVHN's key
    ],
)
def test_bad_configs_fail_before_any_job(tmp_path, change, message):
    config = copy.deepcopy(TINY) | change
    result = snakemake(tmp_path, config, "--dry-run", check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


@pytest.mark.slow
def test_end_to_end_run_writes_every_table_figure_and_training_log(tiny_run):
    tmp_path = tiny_run
    for table in ("mnist", "mnist_contrasts", "mnist_oracle", "mnist_oracle_contrasts"):
        for ext in ("csv", "md", "tex", "html"):
            assert (tmp_path / f"results/tables/{table}.{ext}").stat().st_size > 0
    for figure in ("mnist_errors", "mnist_alignment", "mnist_oracle", "mnist_angles", "proof"):
        for ext in ("png", "pdf"):
            assert (tmp_path / f"results/figures/{figure}.{ext}").stat().st_size > 0
    table = (tmp_path / "results/tables/mnist.csv").read_text()
    assert "STN-C1" in table and "1.32" in table  # the paper's R error of STN-C1 beside ours
    assert "CNN − STN-C1" in (tmp_path / "results/tables/mnist_contrasts.md").read_text()
    oracle = pd.read_csv(tmp_path / "results/tables/mnist_oracle.csv", index_col=0)
    assert list(oracle.index) == ["CNN", "STN-C0-oracle", "STN-C1-oracle"]
    metrics = json.loads((tmp_path / "results/runs/R/STN-C1-oracle/seed0/metrics.json").read_text())
    assert metrics["rotation_undone"] == pytest.approx(1.0, abs=1e-4)  # the oracle undoes all of it
    assert metrics["pose_spread"] == pytest.approx(0.0, abs=1e-2)
    assert "\\toprule" in (tmp_path / "results/tables/mnist.tex").read_text()
    for log in tmp_path.glob("results/runs/*/*/seed0/model.pt"):  # every run logged how it trained
        assert log.with_name("train_log.csv").read_text().startswith("step,epoch,"), log
    for figure in ("mnist_training", "mnist_oracle_training", "mnist_stability"):
        assert (tmp_path / f"results/figures/{figure}.png").stat().st_size > 0
    # the forced divergence: recorded, evaluated as such, and counted by both tables
    diverged = json.loads((tmp_path / "results/runs/R/STN-C0/seed0/metrics.json").read_text())
    assert diverged["status"] == "diverged" and diverged["test_error"] is None
    assert "skipped, its training diverged" in (tmp_path / "logs/evaluate/R/STN-C0/seed0.log").read_text()
    assert "diverged (1/1)" in (tmp_path / "results/tables/mnist.md").read_text()
    assert pd.read_csv(tmp_path / "results/tables/mnist.csv", index_col=0).loc["STN-C0", "R_diverged"] == 1
    stability = pd.read_csv(tmp_path / "results/tables/mnist_stability.csv", index_col=0)
    assert list(stability.index) == ["STN-C0", "STN-C1"] and stability.loc["STN-C0", "R_diverged"] == 1
    assert (tmp_path / "logs/train/R/CNN/seed0.log").exists()
    assert (tmp_path / "benchmarks/train/R/CNN/seed0.tsv").exists()


def test_each_metrics_file_is_what_evaluating_its_checkpoint_gives(tiny_run):
    """Whether its evaluation job computed them or took its training job's (stn.evaluation_memo)."""
    from stn.evaluation import evaluate

    for log in sorted((tiny_run / "logs/evaluate").rglob("*.log")):
        task, network, seed = log.relative_to(tiny_run / "logs/evaluate").with_suffix("").parts
        run = tiny_run / "results/runs" / task / network / seed
        written = json.loads((run / "metrics.json").read_text())
        fresh = evaluate(run / "model.pt", tiny_run / f"resources/test_sets/{task}.pt", None, "cpu")
        assert {k: v for k, v in written.items() if k != "eval_seconds"} == {
            k: v for k, v in fresh.items() if k != "eval_seconds"
        }, log


def test_a_rerun_does_only_what_a_config_change_touches(tiny_run):
    assert planned_jobs(tiny_run, TINY) == {}  # a second run does nothing

    # one network's hyperparameter: only its runs retrain, and the report follows
    changed = copy.deepcopy(TINY)
    changed["overrides"]["STN-C1"] = {"train": {"loc_lr_multiplier": 0.5}}
    jobs = planned_jobs(tiny_run, changed)
    assert jobs["train"] == 2 and jobs["evaluate"] == 2 and "test_set" not in jobs
    assert (
        jobs["table"] == 1 and jobs["alignment_figure"] == jobs["angle_figure"] == jobs["proof_figure"] == 1
    )
    assert "depth_figure" not in jobs  # the oracle table has no STN-C1
    assert jobs["training_figure"] == jobs["stability"] == 1  # mnist's, not mnist_oracle's

    # a new seed trains only the new runs
    jobs = planned_jobs(tiny_run, copy.deepcopy(TINY) | {"seeds": [0, 1]})
    assert jobs["train"] == 6 + ORACLE_RUNS and "test_set" not in jobs


class WorkflowCopy:
    """A copy of the workflow and package beside a copy of a finished run, at the same relative
    places (both mirrored under a new folder, mtimes kept), so that Snakemake sees the same input
    paths and, before any edit, nothing to do: a test edits the copy's code, never the checkout's."""

    def __init__(self, finished_run: Path) -> None:
        work = Path(tempfile.mkdtemp(prefix="code-change", dir=finished_run.parent))
        self.repo = work / ROOT.relative_to(ROOT.anchor)
        self.run = work / finished_run.relative_to(finished_run.anchor)
        copy_checkout(self.repo, ("Snakefile", "workflow", "config", "profiles", "stn"))
        shutil.copytree(finished_run, self.run, symlinks=True)
        self.env = os.environ | {
            "PYTHONPATH": os.pathsep.join([str(self.repo), os.environ.get("PYTHONPATH", "")])
        }

    def plan(self, config: dict) -> tuple[dict[str, int], str]:
        """Rule name -> jobs a dry run of the copy would execute, and the dry run's output."""
        command = snakemake_command(self.run, config, "--cores", "2", "--dry-run", "--quiet", "rules")
        command[command.index("--snakefile") + 1] = str(self.repo / "Snakefile")
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.run, env=self.env)
        text = result.stdout + result.stderr
        assert result.returncode == 0, text
        return jobs_of_dry_run(text), text

    def edit(self, relative: str, text: str = "\n# edited\n") -> None:
        """Append ``text`` (a comment: the checksum changes, nothing else) to a file of the copy."""
        with open(self.repo / relative, "a") as source:
            source.write(text)


def test_a_code_edit_reruns_only_what_depends_on_it(tiny_run):
    # Snakemake compares checksums, so the content must change, not only the time
    copied = WorkflowCopy(tiny_run)
    checkout = (ROOT / "stn" / "networks.py").read_bytes()
    assert copied.plan(TINY)[0] == planned_jobs(tiny_run, TINY)  # the same workflow on the same run

    repo = copied.repo
    others = [*(repo / "stn" / "data").glob("[sp][vl]*/*.*"), *(repo / "stn" / "backbones").glob("[sp]*.py")]
    assert {p.parent.name if p.parent.name != "backbones" else p.stem for p in others} == {"svhn", "plankton"}
    for path in others:  # SVHN's and Plankton's packages, schemas and backbones
        copied.edit(path.relative_to(repo).as_posix())
    assert copied.plan(TINY)[0] == {}  # another data set's or backbone's code plans no MNIST job
    copied.edit("stn/paper_results.yaml")
    jobs, _ = copied.plan(TINY)  # the paper's numbers: only what shows them
    assert jobs == {"table": 2, "depth_figure": 1, "all": 1}
    copied.edit("stn/report/figures.py")
    jobs, _ = copied.plan(TINY)  # the report's code: every table and figure again, no run
    assert jobs["table"] == 2 and jobs["training_figure"] == 2 and jobs["proof_figure"] == 1
    assert not {"train", "evaluate", "rotation_analysis", "test_set", "prepare_data"} & set(jobs)
    copied.edit("stn/evaluation.py")
    jobs, _ = copied.plan(TINY)  # the evaluation's code: every run re-evaluated, none retrained
    assert jobs["evaluate"] == 6 + ORACLE_RUNS and jobs["table"] == 2
    assert not {"train", "test_set", "prepare_data"} & set(jobs)
    marker = "stn imported from the copy"
    copied.edit("stn/networks.py", f"\nimport sys  # noqa: E402\n\nprint({marker!r}, file=sys.stderr)\n")
    jobs, text = copied.plan(TINY)
    assert marker in text  # Snakemake imported the edited copy, not the checkout's package
    assert jobs["train"] == 6 + ORACLE_RUNS and "test_set" not in jobs  # a shared module: every run
    assert (ROOT / "stn" / "networks.py").read_bytes() == checkout


def test_lint_and_format():
    lint = warm_snakemake.run([*SNAKEMAKE, "--lint"], ROOT)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Lints for" not in lint.stdout + lint.stderr
    files = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    fmt = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", *map(str, files)], capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
