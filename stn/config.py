"""Run configurations: JSON-Schema validation with defaults filled in."""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import torch
import yaml

from stn.data import get_dataset
from stn.data.base import DataSet, Splits, Task


class ConfigError(ValueError):
    """A configuration that does not match its schema."""


def _fill_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


DefaultFillingValidator = _fill_defaults(jsonschema.Draft202012Validator)


def validate(
    config: dict[str, Any], schema: dict[str, Any], where: str = "config", section: str = ""
) -> dict[str, Any]:
    """A copy of ``config`` validated against ``schema`` with defaults filled in.

    Raises ConfigError naming the offending key path (below ``section``, where ``config`` is
    one section of a larger config) and what is wrong.
    """
    resolved = copy.deepcopy(config)
    errors = sorted(DefaultFillingValidator(schema).iter_errors(resolved), key=lambda e: list(e.path))
    if errors:
        paths = [".".join(map(str, [section] * bool(section) + list(e.absolute_path))) for e in errors]
        lines = [f"  {path or '<top>'}: {e.message}" for path, e in zip(paths, errors, strict=True)]
        raise ConfigError(f"invalid {where}:\n" + "\n".join(lines))
    return resolved


@cache
def run_schema() -> dict[str, Any]:
    return yaml.safe_load(resources.files("stn").joinpath("schemas/run.schema.yaml").read_text())


def load_yaml(path: Path | str) -> dict[str, Any]:
    with open(path) as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def dataset_of(data: dict[str, Any], where: str) -> DataSet:
    """The data set a ``data`` section names (the run schema's default where it names none)."""
    name = data.get("dataset", run_schema()["properties"]["data"]["properties"]["dataset"]["default"])
    try:
        return get_dataset(name)
    except ValueError as error:
        raise ConfigError(f"invalid {where}: data.dataset: {error}") from None


def resolve_data_section(data: dict[str, Any], where: str = "data section") -> dict[str, Any]:
    """A ``data`` section validated against its data set's schema, with its defaults."""
    dataset = dataset_of(data, where)
    return validate({"dataset": dataset.name, **data}, dataset.schema()["data"], where, "data")


def resolve_task_section(dataset: str, task: dict[str, Any], where: str = "task section") -> dict[str, Any]:
    """A ``task`` section of the data set ``dataset`` validated against the data set's schema,
    with its defaults, and checked by building the task."""
    owner = get_dataset(dataset)
    resolved = validate(task, owner.schema()["task"], where, "task")
    try:
        owner.task(resolved)
    except ValueError as error:
        raise ConfigError(f"invalid {where}: {error}") from None
    return resolved


def resolve_test_set_config(config: dict[str, Any], where: str = "test-set config") -> dict[str, Any]:
    """What a task's test set is made from: the resolved ``data`` and ``task`` sections of
    ``config`` (a run config or just those two sections); nothing else is read."""
    data = resolve_data_section(config.get("data", {}), where)
    return {"data": data, "task": resolve_task_section(data["dataset"], config.get("task", {}), where)}


def resolve_run_config(config: dict[str, Any] | Path | str, where: str | None = None) -> dict[str, Any]:
    """Validate a run config (a mapping or a YAML file), fill defaults and check names: the run
    schema's sections, then the data and task sections by their data set's schema; the backbone
    defaults to the data set's own."""
    if not isinstance(config, dict):
        where = where or str(config)
        config = load_yaml(config)
    where = where or "run config"
    resolved = validate(config, run_schema(), where)
    resolved |= resolve_test_set_config(resolved, where)
    dataset = get_dataset(resolved["data"]["dataset"])
    resolved["model"].setdefault("backbone", dataset.backbone or dataset.name)
    # semantic checks that the schema cannot express, still before any work starts
    from stn.networks import build_network
    from stn.variants import parse_network_name

    try:
        parse_network_name(resolved["model"]["network"])
        model = resolved["model"]
        with torch.device("meta"):  # shapes and names only: no memory, no initialisation
            build_network(model["network"], model["backbone"], **backbone_args(resolved))
    except ValueError as error:
        raise ConfigError(f"invalid {where}: {error}") from None
    return resolved


def task_spec(config: dict[str, Any]) -> Task:
    """The task of a resolved config's ``task`` section, built by its data set."""
    return get_dataset(config["data"]["dataset"]).task(config["task"])


def test_set_key(config: dict[str, Any]) -> dict[str, Any]:
    """What determines a test set: the resolved data (less where its files come from) and task."""
    location = get_dataset(config["data"]["dataset"]).location_keys
    data = {k: v for k, v in config["data"].items() if k not in location}
    return {"data": data, "task": config["task"]}


def load_splits(config: dict[str, Any]) -> Splits:
    """The training and test images of a run config's data set."""
    return get_dataset(config["data"]["dataset"]).load(config["data"])


def backbone_args(config: dict[str, Any]) -> dict[str, Any]:
    """The backbone's arguments, with the input size taken from the task's canvas."""
    return {"input_size": task_spec(config).canvas, **config["model"]["backbone_args"]}
