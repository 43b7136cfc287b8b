"""Helpers shared by the rules: config validation and the runs it describes."""

import copy
import os
from functools import cache
from pathlib import Path

from snakemake.utils import validate

from stn.config import ConfigError, resolve_run_config
from stn.data.mnist_files import MNIST_FILES
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


def deep_merge(base, extra):
    """``base`` with ``extra`` merged in, recursively for mappings."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def data_root(dataset):
    return config["datasets"][dataset].get("root", f"resources/data/{dataset}")


def task_dataset(task):
    dataset = config["tasks"][task]["dataset"]
    if dataset not in config["datasets"]:
        raise ConfigError(f"config: tasks.{task}.dataset: unknown data set {dataset!r}")
    return dataset


@cache
def run_config(task, network, seed):
    """The resolved run config (stn/schemas/run.schema.yaml) of one run."""
    dataset = task_dataset(task)
    backbone = config["backbones"].get(dataset, {"name": dataset, "args": {}})
    task_section = {
        k: v for k, v in config["tasks"][task].items() if k not in ("dataset", "train")
    }
    run = {
        "seed": int(seed),
        "device": config["device"],
        "data": {
            "dataset": dataset,
            "root": data_root(dataset),
            **config["datasets"][dataset],
        },
        "task": {"name": task, **task_section},
        "model": {
            "network": network,
            "backbone": backbone["name"],
            "backbone_args": backbone.get("args", {}),
        },
        "train": deep_merge(config["train"], config["tasks"][task].get("train", {})),
    }
    run = deep_merge(run, config["overrides"].get(network, {}))
    return resolve_run_config(
        run, where=f"config (task {task}, network {network}, seed {seed})"
    )


def check_config():
    """Fail before any job runs when a name or value cannot work."""
    for name in list(config["networks"]) + list(config["overrides"]):
        try:
            parse_network_name(name)
        except InvalidNetworkName as error:
            raise ConfigError(f"config: networks: {error}") from None
    unknown = set(config["report"]["alignment"]["networks"]) - set(config["networks"])
    if unknown and has_alignment_figure():
        raise ConfigError(
            f"config: report.alignment.networks: {sorted(unknown)} not in `networks`"
        )
    for table, spec in config["report"]["tables"].items():
        unknown = set(spec["tasks"]) - set(config["tasks"])
        if unknown:
            raise ConfigError(
                f"config: report.tables.{table}.tasks: unknown tasks {sorted(unknown)}"
            )
    for task in config["tasks"]:
        for network in config["networks"]:
            run_config(task, network, config["seeds"][0])


def has_alignment_figure():
    alignment = config["report"]["alignment"]
    return {alignment["rotation_task"], alignment["scale_task"]} <= set(config["tasks"])


def run_dir(task, network, seed):
    return f"results/runs/{task}/{network}/seed{seed}"


def raw_data(wildcards):
    """The raw files a task's data set needs (none for the embedded sample)."""
    dataset = task_dataset(wildcards.task)
    if config["datasets"][dataset].get("source", "embedded") == "embedded":
        return []
    return [f"{data_root(dataset)}/{name}" for name in MNIST_RAW_FILES]


def all_metrics(tasks=None):
    return [
        f"{run_dir(task, network, seed)}/metrics.json"
        for task in (tasks or config["tasks"])
        for network in config["networks"]
        for seed in config["seeds"]
    ]


def report_outputs():
    outputs = [
        f"results/tables/{table}.{ext}"
        for table in config["report"]["tables"]
        for ext in ("csv", "md", "tex")
    ]
    outputs += [
        f"results/figures/{table}_errors.{ext}"
        for table in config["report"]["tables"]
        for ext in ("png", "pdf")
    ]
    if has_alignment_figure():
        outputs += [f"results/figures/mnist_alignment.{ext}" for ext in ("png", "pdf")]
    return outputs


check_config()
