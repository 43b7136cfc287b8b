"""The frame of a job: its output appended to its log, and an exit that skips collecting what it made."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from stn.job import freeze_for_exit, job


@pytest.fixture()
def unfrozen():
    """Objects frozen by the test are made collectable again afterwards."""
    yield
    gc.unfreeze()


def test_job_appends_stdout_and_stderr_to_its_log(tmp_path, unfrozen):
    log = tmp_path / "logs" / "train" / "run.log"
    for attempt in ("first", "second"):
        with job(log):
            print(f"{attempt} out")
            print(f"{attempt} err", file=sys.stderr)
    assert log.read_text().splitlines() == ["first out", "first err", "second out", "second err"]


def test_job_freezes_the_heap_when_it_ends_with_an_error(tmp_path, unfrozen):
    gc.unfreeze()
    with pytest.raises(SystemExit), job(tmp_path / "job.log"):
        print("before the error")
        raise SystemExit("error: the message")
    assert gc.get_freeze_count() > 0
    assert (tmp_path / "job.log").read_text() == "before the error\n"


def test_freeze_for_exit_keeps_the_output_and_the_exit_status(tmp_path):
    """A process that freezes its heap still flushes what it printed and exits as asked."""
    script = (
        "import sys; from stn.job import freeze_for_exit; import torch\n"
        "print('written', end=''); print('to stderr', file=sys.stderr, end='')\n"
        "freeze_for_exit(); sys.exit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (3, "written", "to stderr")


def test_freeze_moves_the_live_objects_out_of_the_collected_generations(unfrozen):
    gc.unfreeze()
    held = [object() for _ in range(1000)]
    freeze_for_exit()
    assert gc.get_freeze_count() >= len(held)
