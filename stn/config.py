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

from stn.data.registry import Splits, Task, get_dataset


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


def validate(config: dict[str, Any], schema: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """A copy of ``config`` validated against ``schema`` with defaults filled in.

    Raises ConfigError naming the offending key path and what is wrong.
    """
    resolved = copy.deepcopy(config)
    errors = sorted(DefaultFillingValidator(schema).iter_errors(resolved), key=lambda e: list(e.path))
    if errors:
        lines = [f"  {'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in errors]
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


def resolve_run_config(config: dict[str, Any] | Path | str, where: str | None = None) -> dict[str, Any]:
    """Validate a run config (a mapping or a YAML file), fill defaults and check names."""
    if not isinstance(config, dict):
        where = where or str(config)
        config = load_yaml(config)
    resolved = validate(config, run_schema(), where or "run config")
    # semantic checks that the schema cannot express, still before any work starts
    from stn.networks import build_network
    from stn.variants import parse_network_name

    try:
        parse_network_name(resolved["model"]["network"])
        task_spec(resolved)
        model = resolved["model"]
        with torch.device("meta"):  # shapes and names only: no memory, no initialisation
            build_network(model["network"], model["backbone"], **backbone_args(resolved))
    except ValueError as error:
        raise ConfigError(f"invalid {where or 'run config'}: {error}") from None
    return resolved


def task_spec(config: dict[str, Any]) -> Task:
    """The task of a run config, built by its data set (:mod:`stn.data.registry`)."""
    return get_dataset(config["data"]["dataset"]).task(config["task"])


def test_set_key(config: dict[str, Any]) -> dict[str, Any]:
    """What determines a test set: the data (less where it is stored) and the task."""
    data = {k: v for k, v in config["data"].items() if k not in ("root", "mirrors")}
    return {"data": data, "task": config["task"]}


def load_splits(config: dict[str, Any]) -> Splits:
    """The training and test images of a run config's data set."""
    return get_dataset(config["data"]["dataset"]).load(config["data"])


def backbone_args(config: dict[str, Any]) -> dict[str, Any]:
    """The backbone's arguments, with the input size taken from the task canvas."""
    return {"input_size": config["task"]["canvas"], **config["model"]["backbone_args"]}
