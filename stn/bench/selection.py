"""What a bench measures and on what: the device, the levers it can run and the selected runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from stn.bench.levers import CUDA_ONLY
from stn.experiment import runs


def machine(device: torch.device) -> dict[str, str]:
    """What a report was measured on: the device's name and the torch version."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device": name, "torch": torch.__version__}


def select_runs(
    experiment: dict[str, Any],
    device: str,
    levers: Sequence[str],
    tasks: Sequence[str] | None,
    networks: Sequence[str] | None,
    log: Callable[[str], None],
) -> tuple[torch.device, list[str], list[tuple[str, str]]]:
    """The device, the levers it can run (CUDA-only ones are dropped, and said so, on a CPU) and
    the (task, network) runs of the experiment selected by ``tasks`` and ``networks``."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type != "cuda":
        dropped = [lever for lever in levers if lever in CUDA_ONLY]
        if dropped:
            log(f"skipping CUDA-only levers on {dev}: {', '.join(dropped)}")
        levers = [lever for lever in levers if lever not in CUDA_ONLY]
    pairs = [
        (task, network)
        for task, network in runs(experiment)
        if (tasks is None or task in tasks) and (networks is None or network in networks)
    ]
    return dev, list(levers), pairs
