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


@pytest.mark.parametrize(
    "module",
    [
        "stn.report.tables",
        "stn.report.training",
        "stn.report.figures",
        "stn.report.rotation",
        "stn.front_page",
    ],
)
def test_a_report_job_module_does_not_import_torch(module):
    """The tables, the figures drawn from logs and metrics, and the front page read files only
    (importing torch costs 2-3 s of each such job here)."""
    probe = f"import sys, {module}; print('torch' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    assert loaded.stdout.strip() == "False"
