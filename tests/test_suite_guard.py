"""The suite's check that pytest-xdist can keep the tests marked ``xdist_group`` on one worker
(``tests/conftest.py``): it stops the run before any test on a pair that cannot."""

from __future__ import annotations

import importlib.metadata
from types import SimpleNamespace

import pytest

from tests.conftest import pytest_configure


def config(dist: str = "loadgroup", workers: int | str = 2, **extra) -> SimpleNamespace:
    return SimpleNamespace(option=SimpleNamespace(dist=dist, numprocesses=workers), **extra)


@pytest.fixture
def versions(monkeypatch) -> dict[str, str]:
    """The installed versions pytest_configure sees; tests set them."""
    installed: dict[str, str] = {}
    monkeypatch.setattr(importlib.metadata, "version", installed.__getitem__)
    return installed


def test_a_pair_that_loses_the_groups_stops_the_run_saying_why(versions) -> None:
    versions |= {"pytest": "9.2.0", "pytest-xdist": "3.8.0"}
    with pytest.raises(pytest.UsageError, match=r"pytest 9\.2\.0 with pytest-xdist 3\.8\.0 .*#1386"):
        pytest_configure(config())


@pytest.mark.parametrize(
    ("pytest_version", "xdist_version", "settings"),
    [
        ("9.1.1", "3.8.0", {}),  # the test extra's pytest
        ("9.2.0", "3.9.0", {}),  # a pytest-xdist after 3.8
        ("9.2.0", "3.8.0", {"workers": 0}),  # STN_TEST_WORKERS=0: one process, no groups needed
        ("9.2.0", "3.8.0", {"dist": "load"}),  # no groups asked for
        ("9.2.0", "3.8.0", {"workerinput": {}}),  # a worker: the controller has checked
    ],
)
def test_other_runs_go_on(versions, pytest_version: str, xdist_version: str, settings: dict) -> None:
    versions |= {"pytest": pytest_version, "pytest-xdist": xdist_version}
    pytest_configure(config(**settings))
