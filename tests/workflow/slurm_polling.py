"""``python -m snakemake`` whose SLURM executor looks at its jobs at most every POLL_SECONDS.

snakemake-executor-plugin-slurm (2.8) waits 10 s longer after every status check that finds no job
finished, up to 3 minutes: right for a cluster's hour-long jobs, but the test cluster's jobs take
seconds, and each would spend most of its time waiting to be seen finished. The cap changes when
Snakemake looks, not what it submits, sees or does; the jobs themselves run unpatched.

Usage: ``python slurm_polling.py ARGS`` for ``python -m snakemake ARGS``.
"""

from __future__ import annotations

from snakemake.cli import main
from snakemake_executor_plugin_slurm import Executor

POLL_SECONDS = 2.0

_interval = Executor.next_seconds_between_status_checks  # the executor interface's property
Executor.next_seconds_between_status_checks = property(
    lambda self: min(_interval.fget(self), POLL_SECONDS),
    lambda self, seconds: _interval.fset(self, min(seconds, POLL_SECONDS)),
)

if __name__ == "__main__":
    main()
