"""Concurrent training runs on one device: ``--pack K`` (with ``--mps``) and ``--streams K`` of
``python -m stn bench``.

:func:`packed_rates` times K training processes sharing the device (the packing that
:mod:`stn.bench.throughput` measures, and the MPS measurement here).

A small step (R's, about 1 ms for a few GFLOP) leaves most of the GPU idle, and separate
processes without CUDA MPS are time-sliced: their kernels never overlap. Two ways to overlap
them, each timed at 1, 2, 4, ... up to K runs of the selected networks at once:

- ``--mps``: one process per run (as the workflow runs them) under a private MPS control
  daemon (``nvidia-cuda-mps-control -d`` with its pipe and log directories in a temporary
  directory), stopped afterwards;
- ``--streams K``: K runs in this process, each step (a captured graph under a graph lever)
  replayed on its own CUDA stream: an upper bound of what concurrency gives.

A run's *speedup* at K sums each run's steps/s over its steps/s alone (the same way): K when
nothing is shared, 1 when the runs only take turns. Without CUDA (or the MPS binary) a
measurement says why and is skipped.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from stn.bench.levers import random_data, training_step
from stn.bench.timing import calls_per_second, warm_up
from stn.experiment import run_config


class Unavailable(RuntimeError):
    """A concurrency measurement this machine cannot make."""


MPS_CONTROL = "nvidia-cuda-mps-control"


@contextlib.contextmanager
def mps_daemon() -> Iterator[Path]:
    """A private MPS control daemon for the processes started inside (they inherit its pipe
    directory through the environment); yields its temporary directory."""
    control = shutil.which(MPS_CONTROL)
    if control is None:
        raise Unavailable(f"{MPS_CONTROL} is not installed: the MPS measurement is skipped")
    with tempfile.TemporaryDirectory(prefix="stn-mps-") as root:
        variables = {"CUDA_MPS_PIPE_DIRECTORY": f"{root}/pipe", "CUDA_MPS_LOG_DIRECTORY": f"{root}/log"}
        saved = {name: os.environ.get(name) for name in variables}
        for path in variables.values():
            Path(path).mkdir()
        os.environ.update(variables)
        try:
            subprocess.run([control, "-d"], check=True)
            yield Path(root)
        finally:
            subprocess.run([control], input="quit\n", text=True, check=False)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _pack_worker(config: dict, lever: str, device: str, seconds: float, barrier, results, slot: int) -> None:
    """One of ``--pack`` processes: build a step, wait for the others, time it."""
    dev = torch.device(device)
    images, labels = random_data(config, dev)
    step = training_step(config, lever, images, labels)
    warm_up(step, dev)
    barrier.wait()
    results.put((slot, calls_per_second(step, seconds, 0, dev)))


def packed_rates(configs: Sequence[dict], lever: str, device: str, seconds: float) -> list[float]:
    """Steps/s of each config's step while all of them train at once, one process each."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(len(configs)), context.Queue()
    workers = [
        context.Process(target=_pack_worker, args=(config, lever, device, seconds, barrier, results, slot))
        for slot, config in enumerate(configs)
    ]
    for worker in workers:
        worker.start()
    rates = dict(results.get(timeout=600) for _ in workers)
    for worker in workers:
        worker.join()
    return [rates[slot] for slot in range(len(configs))]


def stream_rates(
    configs: Sequence[dict[str, Any]], lever: str, device: torch.device, seconds: float
) -> list[float]:
    """Steps/s of each config's step while all of them train in this process, each on its own
    CUDA stream (every run takes one step per round)."""
    steps = []
    for config in configs:
        images, labels = random_data(config, device)
        steps.append(training_step(config, lever, images, labels))
        warm_up(steps[-1], device)
    streams = [torch.cuda.Stream(device) for _ in steps]

    def one_round(number: int) -> None:
        for step, stream in zip(steps, streams, strict=True):
            with torch.cuda.stream(stream):
                step(number)

    return [calls_per_second(one_round, seconds, 1, device)] * len(steps)


def _counts(most: int) -> list[int]:
    """1, 2, 4, ... up to ``most`` (and ``most`` itself)."""
    counts = [1]
    while counts[-1] * 2 <= most:
        counts.append(counts[-1] * 2)
    return counts + ([most] if counts[-1] != most else [])


def _speedups(
    configs: list[dict[str, Any]], most: int, rates: Callable[[list[dict[str, Any]]], list[float]]
) -> dict[str, Any]:
    """Per count K, the K runs' steps/s (networks in turn) and their speedup over each alone."""
    alone = [rates([config])[0] for config in configs]
    measured = {}
    for count in _counts(most):
        chosen = [i % len(configs) for i in range(count)]
        together = rates([configs[i] for i in chosen])
        speedup = sum(rate / alone[i] for rate, i in zip(together, chosen, strict=True))
        measured[str(count)] = {"steps_per_s": together, "speedup": speedup}
    return {"alone_steps_per_s": alone, "runs": measured}


def measure_concurrency(
    experiment: dict[str, Any],
    pairs: Sequence[tuple[str, str]],
    device: torch.device,
    lever: str,
    seconds: float,
    mps: int = 0,
    streams: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The MPS (``mps`` runs at most) and streams (``streams`` at most) measurements of the
    selected (task, network) runs under ``lever``, per task; MPS first, before this process
    holds a CUDA context of its own."""
    report: dict[str, Any] = {"lever": lever, "mps": {}, "streams": {}}
    tasks = dict.fromkeys(task for task, _ in pairs)
    configs = {
        task: [run_config(experiment, t, n, experiment["seeds"][0]) for t, n in pairs if t == task]
        for task in tasks
    }
    modes = {
        "mps": (mps, lambda chosen: packed_rates(chosen, lever, str(device), seconds)),
        "streams": (streams, lambda chosen: stream_rates(chosen, lever, device, seconds)),
    }
    for mode, (most, rates) in modes.items():
        if most < 1:
            continue
        try:
            if device.type != "cuda":
                raise Unavailable(f"--{mode} needs CUDA (device {device}): skipped")
            with mps_daemon() if mode == "mps" else contextlib.nullcontext():
                for task in tasks:
                    log(f"{task}: {mode}, up to {most} runs at once")
                    report[mode][task] = _speedups(configs[task], most, rates)
        except Unavailable as reason:
            log(str(reason))
            report[mode] = {"skipped": str(reason)}
    return report


def format_concurrency(report: dict[str, Any]) -> str:
    """One line per mode, task and count: the runs' speedup over each alone."""
    lines = [
        f"concurrency under {report['lever']} (speedup: K when nothing is shared, 1 when runs take turns)"
    ]
    for mode in ("mps", "streams"):
        if "skipped" in report[mode]:
            lines.append(f"{mode}: {report[mode]['skipped']}")
        for task, measured in report[mode].items():
            if task == "skipped":
                continue
            cells = ", ".join(f"{k} runs {m['speedup']:.2f}x" for k, m in measured["runs"].items())
            lines.append(f"{mode} {task}: {cells}")
    return "\n".join(lines)
