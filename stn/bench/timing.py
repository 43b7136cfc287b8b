"""Timing a step: its warm-up, the clocks and the calls per second of a measured window."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from stn.training import TrainingStep

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "process": time.process_time}
"""How a measurement is timed: wall-clock time, or (on a CPU shared with other work) the CPU time
of this process, which waiting for a core does not count."""


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA; a CPU has none)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def calls_per_second(
    call: Callable[[int], object],
    seconds: float,
    warmup: int,
    device: torch.device,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Calls per second of ``call(i)`` over at least ``seconds`` of ``clock`` after ``warmup`` calls."""
    for i in range(warmup):
        call(i)
    synchronize(device)
    done, start = 0, clock()
    while clock() - start < seconds:
        call(warmup + done)
        done += 1
    synchronize(device)
    return done / (clock() - start)


def warm_up(step: TrainingStep, device: torch.device) -> None:
    """A training step's warm-up: first the epoch's last batch where it is partial, so that
    ``cudnn.benchmark`` times that batch's shapes (once in a run) before, not inside, a
    measured window; then its eager steps and graph capture."""
    batch = step.train["batch_size"]
    if len(step.images) % batch:
        step(len(step.images) // batch)
    for number in range(TrainingStep.GRAPH_WARMUP + 2):
        step(number)
    synchronize(device)
