"""The conda environment and the pip project name the same dependencies."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~ \[]", r)[0].strip().lower() for r in requirements}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_names = names(project["dependencies"] + project["optional-dependencies"]["test"])
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda_names = {CONDA_NAMES.get(n, n) for n in names([d for d in conda if isinstance(d, str)])}
    assert conda_names - {"python", "pip"} == pip_names
