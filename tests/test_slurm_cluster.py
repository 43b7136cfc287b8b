"""End-to-end checks against a real single-node SLURM cluster on localhost.

Needs root and the packages from ``.ci/install-slurm.sh``; skipped otherwise.
"""

from __future__ import annotations

import time

import pytest

from tests.slurm_cluster import LocalSlurm

# one worker runs them all under pytest-xdist (--dist loadgroup): they share one local cluster
pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]


def sacct(slurm: LocalSlurm, *args: str) -> list[list[str]]:
    res = slurm.run(["sacct", "-n", "-X", "-P", *args])
    return [line.split("|") for line in res.stdout.splitlines() if line.strip()]


_ACTIVE = {"PENDING", "RUNNING", "COMPLETING", "REQUEUED", "CONFIGURING", "SUSPENDED"}


def wait_for_sacct(
    slurm: LocalSlurm, jobids: list[str], fields: str, timeout: float = 30.0
) -> dict[str, list[str]]:
    """Poll ``sacct`` until every job has a final State and no empty field.

    slurmctld forwards job records to slurmdbd asynchronously: right after a job
    finished, sacct may already say COMPLETED while e.g. Partition is still empty.
    """
    fields = f"JobIDRaw,State,{fields}"
    deadline = time.monotonic() + timeout
    rows: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        rows = {r[0]: r[1:] for r in sacct(slurm, "-j", ",".join(jobids), "-o", fields)}
        if set(rows) == set(jobids) and all(r[0] not in _ACTIVE and all(r) for r in rows.values()):
            return rows
        time.sleep(0.5)
    raise AssertionError(f"sacct did not settle within {timeout} s: {rows}")


def test_sbatch_wrap_completes(slurm, tmp_path):
    out = tmp_path / "hi.out"
    res = slurm.run(["sbatch", "--parsable", "--output", str(out), "--wrap", "echo hi"], cwd=tmp_path)
    jobid = res.stdout.strip().split(";")[0]
    assert jobid.isdigit(), res.stdout
    rows = wait_for_sacct(slurm, [jobid], "Account,Partition")
    assert rows[jobid] == ["COMPLETED", slurm.account, slurm.partition]
    assert out.read_text().strip() == "hi"
