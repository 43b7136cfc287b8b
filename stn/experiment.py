"""An experiment config (the workflow's ``config/*.yaml``) and the run configs it describes.

The workflow (``workflow/rules/common.smk``) and ``python -m stn bench`` both read experiments
through these functions, so a run trains with the same settings wherever it is built.
"""

from __future__ import annotations

import copy
from typing import Any

from stn.config import ConfigError, resolve_data_section, resolve_run_config, resolve_task_section


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, recursively for mappings."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def data_root(experiment: dict[str, Any], dataset: str) -> str:
    """Where a data set's files live: its ``root``, else ``resources/data/<name>``."""
    return experiment["datasets"][dataset].get("root", f"resources/data/{dataset}")


def task_dataset(experiment: dict[str, Any], task: str) -> str:
    """The data set a task draws from, checked against the config's data sets."""
    dataset = experiment["tasks"][task]["dataset"]
    if dataset not in experiment["datasets"]:
        raise ConfigError(f"config: tasks.{task}.dataset: unknown data set {dataset!r}")
    return dataset


def given_data_section(experiment: dict[str, Any], dataset: str) -> dict[str, Any]:
    """A data set's ``data`` section as the experiment gives it, with its name and root."""
    return {"dataset": dataset, "root": data_root(experiment, dataset), **experiment["datasets"][dataset]}


def dataset_section(experiment: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The resolved ``data`` section of a data set of the experiment (its schema's defaults filled)."""
    return resolve_data_section(given_data_section(experiment, dataset), where=f"config (datasets.{dataset})")


def task_section(experiment: dict[str, Any], task: str) -> dict[str, Any]:
    """A task's ``task`` section as the experiment gives it (less its data set and training)."""
    given = {k: v for k, v in experiment["tasks"][task].items() if k not in ("dataset", "train")}
    return {"name": task, **given}


def test_set_config(experiment: dict[str, Any], task: str) -> dict[str, Any]:
    """What a task's test set is made from: its data set's resolved ``data`` section and its
    resolved ``task`` section (:func:`stn.evaluation.prepare_test_set`); no network is built."""
    dataset = task_dataset(experiment, task)
    where = f"config (tasks.{task})"
    return {
        "data": dataset_section(experiment, dataset),
        "task": resolve_task_section(dataset, task_section(experiment, task), where),
    }


def table_networks(experiment: dict[str, Any], table: str) -> list[str]:
    """The rows of a table: its own ``networks``, else the config's."""
    return experiment["report"]["tables"][table].get("networks", experiment["networks"])


def runs(experiment: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (task, network) the config trains, in order, without repeats: its tasks x
    networks, then each table's tasks x rows."""
    pairs = [(task, network) for task in experiment["tasks"] for network in experiment["networks"]]
    for table, spec in experiment.get("report", {}).get("tables", {}).items():
        pairs += [(task, network) for task in spec["tasks"] for network in table_networks(experiment, table)]
    return list(dict.fromkeys(pairs))


def table_seeds(experiment: dict[str, Any], table: str, task: str) -> list[int]:
    """The seeds of a table's runs on ``task``: its own ``seeds`` of that task, else the config's."""
    return experiment["report"]["tables"][table].get("seeds", {}).get(task, experiment["seeds"])


def seeded_runs(experiment: dict[str, Any]) -> list[tuple[str, str, int]]:
    """Every (task, network, seed) the config trains, in order, without repeats: :func:`runs` x
    ``seeds``, then each table's runs with its own seeds."""
    triples = [(task, network, seed) for task, network in runs(experiment) for seed in experiment["seeds"]]
    for table, spec in experiment.get("report", {}).get("tables", {}).items():
        triples += [
            (task, network, seed)
            for task in spec["tasks"]
            for network in table_networks(experiment, table)
            for seed in table_seeds(experiment, table, task)
        ]
    return list(dict.fromkeys(triples))


def run_config(experiment: dict[str, Any], task: str, network: str, seed: int | str) -> dict[str, Any]:
    """The resolved run config (``stn/schemas/run.schema.yaml``) of one run of the experiment."""
    dataset = task_dataset(experiment, task)
    backbone = experiment.get("backbones", {}).get(dataset, {"name": dataset, "args": {}})
    run = {
        "seed": int(seed),
        "device": experiment.get("device", "auto"),
        "data": given_data_section(experiment, dataset),
        "task": task_section(experiment, task),
        "model": {
            "network": network,
            "backbone": backbone["name"],
            "backbone_args": backbone.get("args", {}),
        },
        "train": deep_merge(experiment.get("train", {}), experiment["tasks"][task].get("train", {})),
    }
    run = deep_merge(run, experiment.get("overrides", {}).get(network, {}))
    return resolve_run_config(run, where=f"config (task {task}, network {network}, seed {seed})")
