"""The suite's forked Snakemake commands behave as Snakemake in a process of its own."""

from __future__ import annotations

import copy

from tests.workflow import warm_snakemake
from tests.workflow.test_workflow import TINY, snakemake_command


def test_each_command_runs_in_its_folder_and_environment_and_leaves_nothing_to_the_next(tmp_path):
    bad = copy.deepcopy(TINY) | {"networks": ["CNN", "STN-Q1"]}
    for directory, config, fails in ((tmp_path / "bad", bad, True), (tmp_path / "good", TINY, False)):
        directory.mkdir()
        command = snakemake_command(directory, config, "--cores", "1", "--dry-run", "--quiet", "rules")
        result = warm_snakemake.run(command, directory, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert (result.returncode != 0) == fails, result.stderr
        assert ("STN-Q1" in result.stdout + result.stderr) == fails
        assert (directory / ".snakemake").is_dir() != fails  # a bad config stops before any state
