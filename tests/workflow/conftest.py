"""A tiny workflow run shared by the workflow tests: run once per session, then only read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from tests.workflow.test_workflow import TINY, snakemake


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, request) -> Path:
    """A directory where the workflow ran on ``TINY``; tests may dry-run against it and build
    its report, but change none of its outputs. Under pytest-xdist the first worker to ask runs
    it in the session's shared folder and the others wait for it, so it runs once per session."""
    if not hasattr(request.config, "workerinput"):  # not a pytest-xdist worker: this session's folder
        directory = tmp_path_factory.mktemp("tiny-run")
        snakemake(directory, TINY)
        return directory
    shared = tmp_path_factory.getbasetemp().parent  # the session's folder, above each worker's
    directory, done = shared / "tiny-run", shared / "tiny-run.done"
    with FileLock(shared / "tiny-run.lock"):
        if not done.exists():
            shutil.rmtree(directory, ignore_errors=True)  # a worker that failed midway
            directory.mkdir()
            snakemake(directory, TINY)
            done.touch()
    return directory
