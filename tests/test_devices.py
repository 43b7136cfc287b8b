"""One GPU per job: lock files, tested with fake devices on the CPU."""

import subprocess
import sys
import time

import pytest
import torch

from stn.devices import claim_device, release_devices, resolve_device


@pytest.fixture(autouse=True)
def release():
    yield
    release_devices()


def test_each_claim_gets_its_own_device(tmp_path):
    claimed = [claim_device(3, tmp_path, timeout=0) for _ in range(3)]
    assert sorted(claimed) == [0, 1, 2]
    with pytest.raises(TimeoutError, match="no free device among 3"):
        claim_device(3, tmp_path, timeout=0.2, poll=0.05)
    release_devices()
    assert claim_device(3, tmp_path, timeout=0) == 0


def test_a_killed_job_frees_its_device(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from stn.devices import claim_device; print(claim_device(2, {str(tmp_path)!r}), flush=True);"
            "import time; time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        taken = int(holder.stdout.readline())
        mine = claim_device(2, tmp_path, timeout=0)
        assert mine != taken
        with pytest.raises(TimeoutError):
            claim_device(2, tmp_path, timeout=0.1, poll=0.05)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert claim_device(2, tmp_path, timeout=1) == taken


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


def test_slots_share_each_device_evenly(tmp_path):
    claimed = [claim_device(2, tmp_path, timeout=0, slots=3) for _ in range(6)]
    assert claimed == [0, 1, 0, 1, 0, 1]  # every device's first slot, then the second ...
    with pytest.raises(TimeoutError):
        claim_device(2, tmp_path, timeout=0.1, poll=0.05, slots=3)
