"""A workflow job imports only what it uses: training and evaluation jobs load neither scipy,
matplotlib nor pandas (seconds of start-up for each of the demo's ~100 jobs)."""

import subprocess
import sys

import pytest

UNUSED_BY_JOBS = ("scipy", "matplotlib", "pandas")


@pytest.mark.parametrize("module", ["stn.training", "stn.evaluation"])
def test_a_job_module_does_not_import_what_it_does_not_use(module):
    probe = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    assert not set(loaded.stdout.split()) & set(UNUSED_BY_JOBS)
