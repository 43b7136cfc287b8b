"""What produced a result: the code version and the machine a run trained on.

Training stores :func:`describe` in every checkpoint's ``train_stats`` under the key
:data:`TRAIN_STATS_KEY`; evaluation copies ``train_stats`` into ``metrics.json``, so every run's
metrics say which commit and which machine trained it (:mod:`stn.front_page` gathers it for the
report).
"""

from __future__ import annotations

import platform
import socket
import subprocess
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


TRAIN_STATS_KEY = "provenance"
PACKAGE_DIR = Path(__file__).resolve().parent
GIT_TIMEOUT_SECONDS = 30


def _git(*args: str) -> str | None:
    """The stripped output of ``git args`` run in the package's folder; ``None`` where git is
    missing, fails or hangs."""
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@cache
def code_version() -> dict[str, Any]:
    """The git commit of the checkout the ``stn`` package lives in, and whether its tracked files
    differ from that commit (``modified``; untracked files are ignored, as ``git describe --dirty``
    does). ``{"commit": None, "modified": None}`` where the package is not a tracked part of a git
    checkout (an installed copy, a source archive) or git is missing. Cached per process."""
    unknown = {"commit": None, "modified": None}
    # tracked here, not merely inside some checkout (a venv's site-packages may lie in one)
    if _git("ls-files", "--error-unmatch", "__init__.py") is None:
        return unknown
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    if commit is None or status is None:
        return unknown
    return {"commit": commit, "modified": bool(status)}


def cpu_model() -> str | None:
    """The CPU's model name, from /proc/cpuinfo on Linux, else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def environment(device: torch.device | str) -> dict[str, Any]:
    """The software and hardware a run used: Python, torch, CUDA (``None`` for a CPU build of
    torch), the device, its model (the GPU's on CUDA, else the CPU's) and the host name."""
    import torch  # here: the report's jobs, which read provenance, never import torch

    device = torch.device(device)
    on_cuda = device.type == "cuda"
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # a TorchVersion, which weights-only loading refuses
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if on_cuda else None,
        "device": str(device),
        "processor": torch.cuda.get_device_name(device) if on_cuda else cpu_model(),
        "host": socket.gethostname(),
    }


def describe(device: torch.device | str) -> dict[str, Any]:
    """The code version and environment of a run on ``device``, as training records them."""
    return {"code": code_version(), "environment": environment(device)}
