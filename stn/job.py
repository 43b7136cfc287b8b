"""The frame of a process that does one piece of work and ends: a workflow job's script, a
command of ``python -m stn``.

Its output goes to the job's log (:func:`job`), and its exit skips collecting the objects it
made (:func:`freeze_for_exit`): the interpreter's last garbage collection walks every object
alive, and after ``import torch`` those are some hundred thousand, for 0.4-0.6 s of every
process on a 2-core machine (a workflow runs hundreds). Imports nothing heavy: the evaluation
job that takes its training job's metrics never imports torch.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator
from pathlib import Path


def freeze_for_exit() -> None:
    """Move every object alive into the collector's permanent generation (:func:`gc.freeze`), so
    that the interpreter's exit does not walk them. Call it only when the process's work is done
    and its files are closed: objects that die in reference cycles after it are not collected,
    so their finalisers do not run."""
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()


@contextlib.contextmanager
def job(log: Path | str) -> Iterator[None]:
    """Run a job's work within the block: stdout and stderr (progress bars included) are
    appended to ``log``, so that a second copy of a job (resubmitted while the first still runs)
    adds to the first's log, never truncating what it wrote; when the block ends, as the job
    does, with or without an error, the log is closed and :func:`freeze_for_exit` called."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log, "a") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
            yield
    finally:
        freeze_for_exit()
