"""A tiny workflow run shared by the workflow tests: run once per session, then only read."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.workflow.test_workflow import TINY, snakemake


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A directory where the workflow ran on ``TINY``; tests may dry-run against it and build
    its report, but change none of its outputs."""
    directory = tmp_path_factory.mktemp("tiny-run")
    snakemake(directory, TINY)
    return directory
