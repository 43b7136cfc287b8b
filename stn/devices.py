"""Device choice, and one GPU per job on a multi-GPU workstation.

Schedulers such as SLURM give each job its own GPUs through
``CUDA_VISIBLE_DEVICES``; Snakemake on a workstation does not. There, each
training job claims a free GPU by holding an exclusive lock on one file per
device for as long as it runs; the operating system releases the lock when the
process ends, even if it is killed.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import IO

import torch

LOCK_DIR_VARIABLE = "STN_GPU_LOCK_DIR"
DEFAULT_LOCK_DIR = ".stn-gpu-locks"
_held: list[IO] = []


def claim_device(
    count: int, lock_dir: Path | str, timeout: float = 3600.0, poll: float = 1.0, slots: int = 1
) -> int:
    """Index of a device among ``count`` of which this process now holds one of ``slots``
    locks, waiting for one. Slots fill device by device (every device's first slot, then
    every device's second ...), so ``slots`` runs share each device evenly."""
    if count < 1 or slots < 1:
        raise ValueError(f"no device to claim (count={count}, slots={slots})")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        for slot in range(slots):
            for index in range(count):
                name = f"gpu{index}.lock" if slot == 0 else f"gpu{index}.slot{slot}.lock"
                handle = open(lock_dir / name, "a+")  # noqa: SIM115 (held until exit)
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    continue
                handle.seek(0)
                handle.truncate()
                handle.write(f"{os.getpid()}\n")
                handle.flush()
                _held.append(handle)
                return index
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"no free device among {count} ({slots} slots each) in {lock_dir} after {timeout:.0f} s"
            )
        time.sleep(poll)


def release_devices() -> None:
    """Release the device locks this process holds."""
    while _held:
        _held.pop().close()


def resolve_device(name: str, claim: bool = True, runs_per_gpu: int = 1) -> torch.device:
    """``auto``: CUDA when available, else CPU. With several visible GPUs and no scheduler
    having chosen for us, ``claim`` one of the ``runs_per_gpu`` slots of a GPU through lock
    files (``STN_GPU_LOCK_DIR``); without ``claim`` (short jobs such as evaluation) use the
    default GPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    count = torch.cuda.device_count()
    if count == 1 or not claim or "CUDA_VISIBLE_DEVICES" in os.environ:
        return torch.device("cuda", 0)
    lock_dir = os.environ.get(LOCK_DIR_VARIABLE, DEFAULT_LOCK_DIR)
    index = claim_device(count, lock_dir, slots=runs_per_gpu)
    print(f"stn: using cuda:{index} of {count} (lock in {lock_dir})", flush=True)
    return torch.device("cuda", index)
