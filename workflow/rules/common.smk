"""Helpers shared by the rules: config validation and the runs it describes."""

import os
from functools import cache
from pathlib import Path

from snakemake.utils import validate

from stn import code_inputs, experiment
from stn.config import ConfigError
from stn.data import get_dataset
from stn.variants import InvalidNetworkName, parse_network_name

validate(config, "../schemas/config.schema.yaml")

REPO = Path(workflow.main_snakefile).parent
SOFTWARE = "../../environment.yml"  # used with --sdm conda
REPORT_MODULES = sorted(
    path.relative_to(REPO / "stn").as_posix()
    for path in (REPO / "stn" / "report").glob("*.py")
)
"""The report's code (the package stn/report/): tables and figures follow its edits, runs do not."""
NOT_JOB_CODE = ("report", "bench", "front_page.py", "fidelity.py")
"""Code no training, evaluation or data job runs (paths under stn/): the report's and the tools'."""


@cache
def job_code(dataset, backbone, training=False):
    """The code inputs of an evaluation job (or with `training`, a training job) of a run of
    `dataset` on `backbone`: the shared core, its data set's package and its backbone's module
    (stn.code_inputs), so an edit of another data set's or backbone's code plans nothing; a
    training job's leave out what only evaluation runs (code_inputs.EVALUATION_MODULES).
    """
    exclude = NOT_JOB_CODE + (code_inputs.EVALUATION_MODULES if training else ())
    sources = code_inputs.job_sources(REPO / "stn", dataset, backbone, exclude)
    return [os.path.relpath(path) for path in sources]


@cache
def data_code(dataset):
    """The code inputs of a job preparing `dataset` or a test set of its tasks."""
    return [os.path.relpath(p) for p in code_inputs.data_sources(REPO / "stn", dataset)]


def run_code(wildcards):
    """The code inputs of an evaluation job of a run."""
    run = run_config(wildcards.task, wildcards.network, wildcards.seed)
    return job_code(run["data"]["dataset"], run["model"]["backbone"])


def training_code(wildcards):
    """The code inputs of a run's training job."""
    run = run_config(wildcards.task, wildcards.network, wildcards.seed)
    return job_code(run["data"]["dataset"], run["model"]["backbone"], training=True)


TEST_SET = "resources/test_sets/{task}.pt"
"""The fixed test set of a task (rule test_set)."""


def evaluation_memo(wildcards):
    """What a training job needs to evaluate its run for the evaluation job, under the key that
    job checks (stn.evaluation_memo): the test set (read if it exists, not an input, so that
    training never waits for it), the evaluation job's code inputs and device."""
    return {
        "test_set": TEST_SET.format(task=wildcards.task),
        "code": run_code(wildcards),
        "device": config["device"],
    }


REPORT_LIBRARY = [os.path.relpath(REPO / "stn" / name) for name in REPORT_MODULES]
PAPER_RESULTS = os.path.relpath(
    REPO / "stn" / "paper_results.yaml"
)  # read by tables only


wildcard_constraints:
    task="|".join(config["tasks"]),
    network=r"CNN|STN-[A-Za-z0-9.-]+",
    seed=r"\d+",
    dataset="|".join(config["datasets"]),
    table="|".join(config["report"]["tables"]),
    file=r"[^/]+",


def task_dataset(task):
    return experiment.task_dataset(config, task)


@cache
def run_config(task, network, seed):
    """The resolved run config (stn/schemas/run.schema.yaml) of one run."""
    return experiment.run_config(config, task, network, seed)


def table_networks(table):
    """The rows of a table: its own `networks`, else the config's."""
    return experiment.table_networks(config, table)


def runs():
    """Every (task, network) the tables need, in order, without repeats."""
    return experiment.runs(config)


def gpu_share():
    """A training job's share of a GPU in percent (the `gpu_percent` resource that
    profiles/gpu caps at 100 per GPU): `runs_per_gpu` jobs fill one."""
    if not config["resources"]["train_gpus"]:
        return 0
    return 100 // config["resources"]["runs_per_gpu"]


def trained(task, networks):
    """Whether every network of `networks` is trained on `task`."""
    return {(task, network) for network in networks} <= set(runs())


def check_config():
    """Fail before any job runs when a name or value cannot work."""
    settings = config["report"]
    names = {
        "networks": config["networks"],
        "overrides": list(config["overrides"]),
        **{
            f"report.tables.{t}.networks": table_networks(t) for t in settings["tables"]
        },
    }
    for where, networks in names.items():
        for name in networks:
            try:
                parse_network_name(name)
            except InvalidNetworkName as error:
                raise ConfigError(f"config: {where}: {error}") from None
    unknown = set(settings["alignment"]["networks"]) - set(config["networks"])
    if unknown and has_alignment_figure():
        raise ConfigError(
            f"config: report.alignment.networks: {sorted(unknown)} not in `networks`"
        )
    for table, spec in settings["tables"].items():
        unknown = set(spec["tasks"]) - set(config["tasks"])
        if unknown:
            raise ConfigError(
                f"config: report.tables.{table}.tasks: unknown tasks {sorted(unknown)}"
            )
        unknown = set(spec.get("seeds", {})) - set(spec["tasks"])
        if unknown:
            raise ConfigError(
                f"config: report.tables.{table}.seeds: {sorted(unknown)} are not tasks of the table"
            )
        for pair in spec.get("contrasts", []):
            unknown = set(pair) - set(table_networks(table))
            if unknown:
                raise ConfigError(
                    f"config: report.tables.{table}.contrasts: {sorted(unknown)} are not rows of the table"
                )
    for figures in ("depth_figures", "rotation_figures"):
        unknown = set(settings[figures]) - set(settings["tables"])
        if unknown:
            raise ConfigError(
                f"config: report.{figures}: unknown tables {sorted(unknown)}"
            )
    for task, network in runs():
        run_config(task, network, config["seeds"][0])


def has_alignment_figure():
    alignment = config["report"]["alignment"]
    return {alignment["rotation_task"], alignment["scale_task"]} <= set(config["tasks"])


def has_angle_figure():
    alignment = config["report"]["alignment"]
    return trained(alignment["rotation_task"], alignment["networks"])


def has_proof_figure():
    proof = config["report"]["proof"]
    return trained(proof["task"], proof["networks"])


def model_paths(task, networks, seed):
    return [f"{run_dir(task, network, seed)}/model.pt" for network in networks]


def run_dir(task, network, seed):
    return f"results/runs/{task}/{network}/seed{seed}"


@cache
def resolved_data(dataset):
    return experiment.dataset_section(config, dataset)


def dataset_section(wildcards):
    """The resolved `data` section of a data set (its schema's defaults filled in)."""
    return resolved_data(wildcards.dataset)


@cache
def test_set_config(task):
    """What a task's test set is made from: its resolved data and task sections."""
    return experiment.test_set_config(config, task)


def dataset_raw_files(wildcards):
    """The raw files a data set needs (its `raw_files`, stn.data.base): the copies present,
    else the download targets; none for data shipped with a package."""
    data = dataset_section(wildcards)
    return [str(path) for path in get_dataset(data["dataset"]).raw_files(data)]


def prepared_data(wildcards):
    """The manifest of a task's prepared data set."""
    return f"resources/prepared/{task_dataset(wildcards.task)}.json"


def table_seeds(table, task):
    """The seeds of a table's runs on a task: its own, else the config's."""
    return experiment.table_seeds(config, table, task)


def table_metrics(table):
    """The metrics of every run of a table: its tasks x networks x seeds."""
    return [
        f"{run_dir(task, network, seed)}/metrics.json"
        for task in config["report"]["tables"][table]["tasks"]
        for network in table_networks(table)
        for seed in table_seeds(table, task)
    ]


def table_logs(table):
    """The training logs of every run of a table, in the order of `table_metrics`."""
    return [
        path.replace("metrics.json", "train_log.csv") for path in table_metrics(table)
    ]


def stability_tables():
    """The tables with a learned transformer (not only oracles): they get a stability table."""
    return [
        table
        for table in config["report"]["tables"]
        if any(parse_network_name(n).learns_localisation for n in table_networks(table))
    ]


def rotation_analyses(table):
    """The rotation analyses of a table's networks with transformers, over its tasks and seeds."""
    return [
        f"{run_dir(task, network, seed)}/rotation.json"
        for task in config["report"]["tables"][table]["tasks"]
        for network in table_networks(table)
        if network != "CNN"
        for seed in table_seeds(table, task)
    ]


def all_metrics():
    """The metrics of every run the tables need."""
    return [
        f"{run_dir(task, network, seed)}/metrics.json"
        for task, network, seed in experiment.seeded_runs(config)
    ]


def all_manifests():
    """The manifests of the prepared data sets of the runs' tasks."""
    datasets = dict.fromkeys(task_dataset(task) for task, _ in runs())
    return [f"resources/prepared/{dataset}.json" for dataset in datasets]


def report_outputs():
    tables = config["report"]["tables"]
    stems = [f"tables/{table}{part}" for table in tables for part in ("", "_contrasts")]
    stems += [
        f"tables/{table}_rotation" for table in config["report"]["rotation_figures"]
    ]
    stems += [f"tables/{table}_stability" for table in stability_tables()]
    figures = [f"{table}_errors" for table in tables] + config["report"][
        "depth_figures"
    ]
    figures += [f"{table}_training" for table in tables]
    figures += [f"{table}_stability" for table in stability_tables()]
    figures += [f"{table}_rotation" for table in config["report"]["rotation_figures"]]
    figures += ["mnist_alignment"] * has_alignment_figure()
    figures += ["mnist_angles"] * has_angle_figure() + ["proof"] * has_proof_figure()
    outputs = [
        f"results/{stem}.{ext}"
        for stem in stems
        for ext in ("csv", "md", "tex", "html")
    ]
    return outputs + [
        f"results/figures/{figure}.{ext}"
        for figure in figures
        for ext in ("png", "pdf")
    ]


check_config()
