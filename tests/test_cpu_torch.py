"""tools/cpu_torch.py: the newest CPU build of torch that the project admits."""

import importlib.util
from pathlib import Path

from pip._vendor.packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("cpu_torch", ROOT / "tools" / "cpu_torch.py")
cpu_torch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cpu_torch)


def test_newest_admitted_cpu_build_is_chosen():
    versions = ["2.15.0+cpu", "2.15.0", "2.14.1", "2.13.0+cpu", "2.12.0+cpu", "2.13.0", "not-a-version"]
    assert cpu_torch.newest_cpu_build(versions, Requirement("torch>=2.1,<=2.14.1")) == "2.13.0+cpu"
    assert cpu_torch.newest_cpu_build(versions, Requirement("torch>=2.1")) == "2.15.0+cpu"


def test_no_cpu_build_gives_none():
    assert cpu_torch.newest_cpu_build(["2.14.1", "2.13.0+cu121"], Requirement("torch")) is None
    assert cpu_torch.newest_cpu_build(["2.0.0+cpu"], Requirement("torch>=2.1")) is None


def test_requirement_is_the_projects_own(tmp_path):
    assert str(cpu_torch.torch_requirement().specifier) == "<=2.14.1,>=2.1"
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["numpy"]\n')
    try:
        cpu_torch.torch_requirement(pyproject)
    except LookupError as error:
        assert "no torch" in str(error)
    else:
        raise AssertionError("a project without torch was accepted")
