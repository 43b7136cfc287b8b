"""Print the requirement of PyTorch's newest CPU build that the project admits, or nothing.

``run.sh`` installs it before the project on a machine without an NVIDIA GPU: the CPU build is
about 200 MB, where PyPI's default Linux build brings several GB of CUDA libraries that the CPU
never loads. The versions are those pip can see (its configured indexes and find-links) plus
PyTorch's CPU index; a CPU build is one with the local label ``+cpu``. Nothing is printed when
none is found or the index cannot be read, and ``run.sh`` then installs the default build.

Runs with the virtual environment's Python before the project is installed: standard library
and pip only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.version import InvalidVersion, Version

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def torch_requirement(pyproject: Path = PYPROJECT) -> Requirement:
    """The project's own ``torch`` dependency."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    for text in dependencies:
        requirement = Requirement(text)
        if requirement.name == "torch":
            return requirement
    raise LookupError(f"{pyproject}: no torch in [project] dependencies")


def newest_cpu_build(versions: list[str], requirement: Requirement) -> str | None:
    """The newest ``+cpu`` version that ``requirement`` admits, ignoring the local label."""
    admitted = []
    for text in versions:
        try:
            version = Version(text)
        except InvalidVersion:
            continue
        if version.local == "cpu" and requirement.specifier.contains(version.public):
            admitted.append(version)
    return str(max(admitted)) if admitted else None


def visible_versions() -> list[str]:
    """Every torch version pip can find, PyTorch's CPU index included; [] when it cannot tell."""
    command = [sys.executable, "-m", "pip", "index", "versions", "torch", "--json", "--retries", "0"]
    command += ["--timeout", "15", "--extra-index-url", CPU_INDEX]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        return json.loads(result.stdout)["versions"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return []


def main() -> None:
    version = newest_cpu_build(visible_versions(), torch_requirement())
    if version:
        print(f"torch=={version}")


if __name__ == "__main__":
    main()
