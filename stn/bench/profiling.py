"""Profiles of training steps: ``python -m stn bench --profile STEPS``.

Instead of timing, ``torch.profiler`` (kernel time on CUDA, CPU time on a CPU) records, per run
and lever, the step's time, the augmentation's share of it and the costliest operators, with a
Chrome trace of each under ``results/bench/traces/``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.autograd import DeviceType

from stn.bench.levers import random_data, training_step
from stn.bench.selection import machine, select_runs
from stn.bench.timing import synchronize, warm_up
from stn.experiment import run_config
from stn.training import TrainingStep


class _LabelledAugmentation:
    """A task whose rendering is one labelled range (``augmentation``) in a profile."""

    def __init__(self, task: Any) -> None:
        self._task = task

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)

    def render(self, images: Tensor, draws: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        with torch.profiler.record_function("augmentation"):
            return self._task.render(images, draws)


PROFILE_ROWS = 15


def profile_step(
    config: dict[str, Any], lever: str, steps: int, device: torch.device, trace: Path | None = None
) -> dict[str, Any]:
    """Profile ``steps`` training steps of a run config under ``lever`` with ``torch.profiler``
    (on CUDA: device time; on a CPU: CPU time), after the warm-up (and CUDA-graph capture).
    Returns the step's span and busy time (the sum of its kernels on CUDA, of its operators'
    own time on a CPU), the augmentation's share of the span (the labelled rendering; inside
    a captured CUDA graph it cannot be told apart, so measure it on an eager lever), the
    kernels (CUDA) or operators (CPU) taking the most time with their share of the busy time,
    and the printed table; writes a Chrome trace to ``trace``."""
    images, labels = random_data(config, device)
    step = training_step(config, lever, images, labels)
    step.task = _LabelledAugmentation(step.task)
    warm_up(step, device)
    cuda = device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU]
    activities += [torch.profiler.ProfilerActivity.CUDA] if cuda else []
    with torch.profiler.profile(activities=activities) as profiler:
        for i in range(steps):
            with torch.profiler.record_function("step"):
                step(TrainingStep.GRAPH_WARMUP + 2 + i)
        synchronize(device)
    events = profiler.key_averages()
    total, own = (
        ("device_time_total", "self_device_time_total") if cuda else ("cpu_time_total", "self_cpu_time_total")
    )
    ranges = {e.key: getattr(e, total) for e in events if e.key in ("step", "augmentation")}
    # on CUDA only the kernels themselves: an operator's device time is its kernels' again
    operators = sorted(
        (
            e
            for e in events
            if e.key not in ("step", "augmentation")
            and getattr(e, own) > 0
            and (not cuda or e.device_type == DeviceType.CUDA)
        ),
        key=lambda e: getattr(e, own),
        reverse=True,
    )
    busy_us = sum(getattr(e, own) for e in operators)
    step_us = ranges.get("step") or busy_us
    if trace is not None:
        trace.parent.mkdir(parents=True, exist_ok=True)
        profiler.export_chrome_trace(str(trace))
    return {
        "lever": lever,
        "steps": steps,
        "clock": "device" if cuda else "cpu",
        "step_ms": step_us / steps / 1000,
        "busy_ms": busy_us / steps / 1000,
        # None under a replayed CUDA graph: the rendering is inside it, not a range of its own
        "augmentation_share": ranges["augmentation"] / step_us
        if "augmentation" in ranges and step_us
        else None,
        "top": [
            {"name": e.key, "ms_per_step": getattr(e, own) / steps / 1000, "share": getattr(e, own) / busy_us}
            for e in operators[:PROFILE_ROWS]
        ],
        "table": events.table(sort_by=own, row_limit=PROFILE_ROWS),
    }


def run_profiles(
    experiment: dict[str, Any],
    device: str = "auto",
    levers: Sequence[str] = ("fp32",),
    tasks: Sequence[str] | None = None,
    networks: Sequence[str] | None = None,
    steps: int = 10,
    trace_dir: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """:func:`profile_step` for each selected run of an experiment and each lever; Chrome traces
    (``<task>-<network>-<lever>.json``) in ``trace_dir`` where given."""
    dev, levers, pairs = select_runs(experiment, device, levers, tasks, networks, log)
    profiles = []
    for task, network in pairs:
        config = run_config(experiment, task, network, experiment["seeds"][0]) | {"device": dev.type}
        for lever in levers:
            log(f"profiling {task} {network}: {lever}")
            trace = None if trace_dir is None else trace_dir / f"{task}-{network}-{lever}.json"
            profiles.append(
                {"task": task, "network": network, **profile_step(config, lever, steps, dev, trace)}
            )
    return {**machine(dev), "profiles": profiles}


def format_profiles(report: dict[str, Any]) -> str:
    """Per profiled run: the step's time, the augmentation's share and the costliest operators."""
    lines = [f"device {report['device']}, torch {report['torch']}"]
    for entry in report["profiles"]:
        share = entry["augmentation_share"]
        lines += [
            "",
            f"{entry['task']} {entry['network']} ({entry['lever']}): {entry['step_ms']:.2f} ms per step "
            f"({entry['clock']} time), {entry['busy_ms']:.2f} ms busy; augmentation "
            f"{'-' if share is None else f'{share:.0%}'} of the step",
        ]
        lines += [f"  {op['share']:>6.1%} {op['ms_per_step']:>9.3f} ms  {op['name']}" for op in entry["top"]]
    return "\n".join(lines)
