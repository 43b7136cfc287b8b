"""Helpers shared by the rules: config validation and the runs it describes."""

import os
from functools import cache
from pathlib import Path

from snakemake.utils import validate

from stn import experiment
from stn.config import ConfigError
from stn.data.mnist_files import MNIST_FILES, present_mnist_files
from stn.evaluation import test_set_key
from stn.variants import InvalidNetworkName, parse_network_name

validate(config, "../schemas/config.schema.yaml")

REPO = Path(workflow.main_snakefile).parent
MNIST_RAW_FILES = [remote.name for remote in MNIST_FILES.values()]
SOFTWARE = "../../environment.yml"  # used with --sdm conda
LIBRARY = sorted(
    os.path.relpath(path)
    for path in (REPO / "stn").rglob("*")
    if path.suffix in (".py", ".yaml") and path.name not in ("report.py", "bench.py")
)
DATA_LIBRARY = sorted(
    os.path.relpath(path)
    for path in [REPO / "stn" / "geometry.py", *(REPO / "stn" / "data").glob("*.py")]
)
REPORT_LIBRARY = [os.path.relpath(REPO / "stn" / "report.py")]


wildcard_constraints:
    task="|".join(config["tasks"]),
    network=r"CNN|STN-[A-Za-z0-9.-]+",
    seed=r"\d+",
    dataset="|".join(config["datasets"]),
    table="|".join(config["report"]["tables"]),


def data_root(dataset):
    return experiment.data_root(config, dataset)


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
        for pair in spec.get("contrasts", []):
            unknown = set(pair) - set(table_networks(table))
            if unknown:
                raise ConfigError(
                    f"config: report.tables.{table}.contrasts: {sorted(unknown)} are not rows of the table"
                )
    unknown = set(settings["depth_figures"]) - set(settings["tables"])
    if unknown:
        raise ConfigError(
            f"config: report.depth_figures: unknown tables {sorted(unknown)}"
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


def raw_data(wildcards):
    """The raw files a task's data set needs (none for the embedded sample): the copies present
    (.gz or uncompressed, in the root or its MNIST/raw folder), else the download targets.
    """
    dataset = task_dataset(wildcards.task)
    if config["datasets"][dataset].get("source", "embedded") == "embedded":
        return []
    return [str(path) for path in present_mnist_files(data_root(dataset))]


def table_metrics(table):
    """The metrics of every run of a table: its tasks x networks x seeds."""
    return [
        f"{run_dir(task, network, seed)}/metrics.json"
        for task in config["report"]["tables"][table]["tasks"]
        for network in table_networks(table)
        for seed in config["seeds"]
    ]


def report_outputs():
    tables = config["report"]["tables"]
    stems = [f"tables/{table}{part}" for table in tables for part in ("", "_contrasts")]
    figures = [f"{table}_errors" for table in tables] + config["report"][
        "depth_figures"
    ]
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
