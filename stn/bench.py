"""Training throughput of an experiment config, and what its whole grid costs in device-hours.

``python -m stn bench --config config/paper.yaml --device cuda`` times the library's own
training step (:class:`stn.training.TrainingStep`: batch, augmentation, forward, backward,
update) for every task and network the config trains, at the config's sizes, under each
*lever* side by side in one run:

- ``today``: the step before the speed work: a CPU permutation of the whole training set,
  a new generator and a host-to-device copy every step, fp32;
- ``fp32``: the same step without that host work, with the training log's device-side sums
  (:class:`stn.monitor.TrainingMonitor`) as every run keeps them; ``no_log`` without them
  (``train.log_every: 0``): the log's cost;
- ``bf16``, ``channels_last``, ``polyphase``, ``graph`` and their combinations: the
  ``train`` switches ``precision``, ``channels_last`` (with ``cudnn_benchmark``),
  ``polyphase`` (``polyphase_all``: its value ``all``) and ``cuda_graph``. A lever sets every
  switch (those it does not name are off), whatever the config's ``train`` section says. A
  CPU runs ``channels_last`` and ``polyphase`` too; it skips the bf16 and graph levers
  (:data:`CUDA_ONLY`).

Each measurement warms its step up first (the epoch's partial last batch, the eager steps,
the graph capture); ``--repeats N`` times each lever N times on fresh steps, the levers
taking turns, and keeps the fastest.

It also times the augmentation alone (its share of a step), counts each network's FLOPs (the
floor: FLOPs over ``--peak-tflops``), and measures packing: ``--pack K`` training processes
sharing one device, each running a different network, against each one alone. The report
projects the grid's device-hours (steps x seeds / rate, summed) for every lever, sequential
and packed, and is written as JSON under ``results/bench/``. Steps train on random digits of
the data set's size: throughput does not depend on the pixels.

``--profile STEPS`` profiles instead (``torch.profiler``: kernel time on CUDA, CPU time on a
CPU): per run and lever, the step's time, the augmentation's share of it and the costliest
operators, with a Chrome trace of each under ``results/bench/traces/``. ``--blocks`` times each
conv + max-pool pair of the selected runs' networks as a conv then a pool and as one polyphase
conv (:func:`stn.backbones.conv_then_pool`), fused by the ``polyphase`` switch or not.
``--pack K --mps`` and ``--streams K`` time concurrent runs instead (:mod:`stn.bench_concurrency`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.autograd import DeviceType
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from stn.backbones import ConvBlock, conv_then_pool
from stn.config import ConfigError, load_yaml, task_spec
from stn.data.registry import get_dataset
from stn.experiment import deep_merge, run_config, runs
from stn.io import save_json
from stn.training import (
    TrainingStep,
    batch_indices,
    capture_cuda_graph,
    make_optimizer,
    network_from_config,
    total_steps,
)

SWITCHES_OFF: dict[str, Any] = {
    "precision": "fp32",
    "channels_last": False,
    "cudnn_benchmark": False,
    "cuda_graph": False,
    "polyphase": False,
}
BF16_CHANNELS_LAST = {"precision": "bf16", "channels_last": True, "cudnn_benchmark": True}
LEVERS: dict[str, dict[str, Any]] = {
    "today": {},
    "fp32": {},
    "no_log": {"log_every": 0},
    "bf16": {"precision": "bf16"},
    "channels_last": {"channels_last": True, "cudnn_benchmark": True},
    "bf16+channels_last": BF16_CHANNELS_LAST,
    "polyphase": {"polyphase": True},
    "polyphase_all": {"polyphase": "all"},
    "channels_last+polyphase": {"channels_last": True, "cudnn_benchmark": True, "polyphase": True},
    "channels_last+no_log": {"channels_last": True, "cudnn_benchmark": True, "log_every": 0},
    "bf16+channels_last+polyphase": BF16_CHANNELS_LAST | {"polyphase": True},
    "graph": {"cuda_graph": True},
    "graph+polyphase": {"cuda_graph": True, "polyphase": True},
    "bf16+graph": {"precision": "bf16", "cuda_graph": True},
    "bf16+channels_last+graph": BF16_CHANNELS_LAST | {"cuda_graph": True},
    "bf16+channels_last+graph+polyphase": BF16_CHANNELS_LAST | {"cuda_graph": True, "polyphase": True},
    "bf16+channels_last+graph+polyphase_all": BF16_CHANNELS_LAST | {"cuda_graph": True, "polyphase": "all"},
    "bf16+channels_last+graph+polyphase_all+no_log": BF16_CHANNELS_LAST
    | {"cuda_graph": True, "polyphase": "all", "log_every": 0},
}
"""Each lever's ``train`` switches; the ones it does not name are off (:data:`SWITCHES_OFF`),
whatever the config sets, so every lever is measured on the same footing."""
CPU_SWITCHES = {"log_every", "channels_last", "cudnn_benchmark", "polyphase"}
"""The switches a CPU step honours (``cudnn_benchmark`` is ignored there)."""
CUDA_ONLY = {name for name, switches in LEVERS.items() if set(switches) - CPU_SWITCHES}


class HostBoundStep(TrainingStep):
    """The step as it was before the speed work (the ``today`` lever, for reference): each
    step permutes the whole training set on the CPU, copies its slice to the device and
    creates a new generator."""

    def indices(self, step: int) -> Tensor:
        self.generator = torch.Generator(self.device)
        batch = batch_indices(step, len(self.images), self.train["batch_size"], self.seed)
        return batch.to(self.device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "process": time.process_time}
"""How a measurement is timed: wall-clock time, or (on a CPU shared with other work) the CPU time
of this process, which waiting for a core does not count."""


def _rate(
    call: Callable[[int], object],
    seconds: float,
    warmup: int,
    device: torch.device,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Calls per second of ``call(i)`` over at least ``seconds`` of ``clock`` after ``warmup`` calls."""
    for i in range(warmup):
        call(i)
    _synchronize(device)
    done, start = 0, clock()
    while clock() - start < seconds:
        call(warmup + done)
        done += 1
    _synchronize(device)
    return done / (clock() - start)


def _warm_up(step: TrainingStep, device: torch.device) -> None:
    """A training step's warm-up: first the epoch's last batch where it is partial, so that
    ``cudnn.benchmark`` times that batch's shapes (once in a run) before, not inside, a
    measured window; then its eager steps and graph capture."""
    batch = step.train["batch_size"]
    if len(step.images) % batch:
        step(len(step.images) // batch)
    for number in range(TrainingStep.GRAPH_WARMUP + 2):
        step(number)
    _synchronize(device)


def random_data(config: dict[str, Any], device: torch.device, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Random training images and labels shaped as a run's data set, as many as it has, on
    ``device`` (speed does not depend on the pixels)."""
    dataset = get_dataset(config["data"]["dataset"])
    generator = torch.Generator().manual_seed(seed)
    images, labels = dataset.random_images(dataset.train_size(config["data"]), generator)
    return images.to(device), labels.to(device)


def training_step(config: dict[str, Any], lever: str, images: Tensor, labels: Tensor) -> TrainingStep:
    """The training step of ``config`` under ``lever``, on random data."""
    config = deep_merge(config, {"train": SWITCHES_OFF | LEVERS[lever]})
    torch.manual_seed(config["seed"])
    model = network_from_config(config).to(images.device).train()
    optimizer = make_optimizer(model, config["train"])
    step_class = HostBoundStep if lever == "today" else TrainingStep
    step = step_class(
        model, optimizer, images, labels, task_spec(config), config["train"], config["seed"], 10**9
    )
    if step.monitor is not None:  # as in a run, where an interval's last step alone needs them
        step.monitor.gradients_due = False
    return step


def step_flops(step: TrainingStep) -> int:
    """FLOPs of one forward and backward pass of ``step``'s network (convolutions and products)."""
    index = step.indices(0)
    draws = step.task.draw(len(index), step.generator, step.device)
    with FlopCounterMode(display=False) as counter:
        step.loss(index, draws).backward()
    step.optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def augmentation_rate(config: dict[str, Any], images: Tensor, seconds: float, graph: bool = False) -> float:
    """Batches per second of the task's augmentation (draws and rendering) alone; with
    ``graph`` (CUDA), of its rendering replayed as a captured CUDA graph, as inside a
    ``cuda_graph`` step."""
    task, batch, device = task_spec(config), config["train"]["batch_size"], images.device
    generator = torch.Generator(device).manual_seed(0)

    def augment_once(i: int) -> None:
        index = torch.randint(len(images), (batch,), device=device, generator=generator)
        task.render(images[index], task.draw(batch, generator, device))

    if not graph:
        return _rate(augment_once, seconds, 2, device)
    index = torch.randint(len(images), (batch,), device=device, generator=generator)
    draws = task.draw(batch, generator, device)
    rendering, _ = capture_cuda_graph(lambda: task.render(images[index], draws), device)
    return _rate(lambda i: rendering.replay(), seconds, 2, device)


class _OperationCounter(TorchDispatchMode):
    ALIASES = (torch.ops.aten._unsafe_view.default,)  # a view of a fresh result, not marked as one

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += not func.is_view and func not in self.ALIASES
        return func(*args, **(kwargs or {}))


def device_operations(call: Callable[[], object]) -> int:
    """The operations (views aside) ``call()`` dispatches: about one CUDA kernel each, so for
    small tensors what a replayed CUDA graph of it costs, countable on any device."""
    with _OperationCounter() as counter:
        call()
    return counter.count


def rendering_operations(config: dict[str, Any], images: Tensor) -> int:
    """The device operations of rendering one batch of ``config``'s task (:func:`device_operations`)."""
    task, batch, device = task_spec(config), config["train"]["batch_size"], images.device
    draws = task.draw(batch, torch.Generator(device).manual_seed(0), device)
    return device_operations(lambda: task.render(images[:batch], draws))


def _pack_worker(config: dict, lever: str, device: str, seconds: float, barrier, results, slot: int) -> None:
    """One of ``--pack`` processes: build a step, wait for the others, time it."""
    dev = torch.device(device)
    images, labels = random_data(config, dev)
    step = training_step(config, lever, images, labels)
    _warm_up(step, dev)
    barrier.wait()
    results.put((slot, _rate(step, seconds, 0, dev)))


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


def _machine(device: torch.device) -> dict[str, str]:
    """What a report was measured on: the device's name and the torch version."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device": name, "torch": torch.__version__}


def _selection(
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


def run_benchmark(
    experiment: dict[str, Any],
    device: str = "auto",
    levers: Sequence[str] = ("today", "fp32"),
    tasks: Sequence[str] | None = None,
    networks: Sequence[str] | None = None,
    seconds: float = 2.0,
    pack: int = 1,
    pack_lever: str | None = None,
    peak_tflops: float = 790.0,
    repeats: int = 1,
    clock: str = "wall",
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Measure an experiment's steps/s per task, network and lever; project its device-hours.
    ``clock``: ``wall``, or ``process`` (CPU time, :data:`CLOCKS`; CPU only) for a loaded machine.
    With ``repeats`` > 1 each lever is timed that many times on a fresh step, the levers taking
    turns, and the fastest counts (all are kept under ``repeats``): a disturbed measurement
    does not decide a comparison.

    Returns the JSON report (see :func:`format_report` for its reading).
    """
    dev, levers, pairs = _selection(experiment, device, levers, tasks, networks, log)
    if clock == "process" and dev.type != "cpu":
        raise ValueError("--clock process counts CPU time only: time a GPU with --clock wall")
    pack_lever = pack_lever or levers[-1]
    seeds = len(experiment["seeds"])
    report: dict[str, Any] = {
        **_machine(dev),
        "seconds_per_measurement": seconds,
        "clock": clock,
        "repeats": repeats,
        "levers": {lever: LEVERS[lever] for lever in levers},
        "peak_tflops": peak_tflops,
        "runs": [],
        "augmentation": {},
        "packing": {},
    }
    data: dict[str, tuple[Tensor, Tensor]] = {}
    for task, network in pairs:
        config = run_config(experiment, task, network, experiment["seeds"][0])
        config["device"] = dev.type
        key = json.dumps(config["data"], sort_keys=True)
        if key not in data:
            data[key] = random_data(config, dev)
        images, labels = data[key]
        count = len(images)
        entry: dict[str, Any] = {
            "task": task,
            "network": network,
            "batch_size": config["train"]["batch_size"],
            "steps": total_steps(config, count),
            "seeds": seeds,
            "steps_per_s": {},
            # the plain network's work (fp32, no polyphase), for the floor: the same whatever the levers
            "flops": step_flops(training_step(config, "fp32", images, labels)),
        }
        rates: dict[str, list[float]] = {lever: [] for lever in levers}
        for attempt, lever in itertools.product(range(repeats), levers):
            if lever in entry.get("errors", {}):
                continue
            log(f"{task} {network}: {lever}" + (f" ({attempt + 1} of {repeats})" if repeats > 1 else ""))
            try:
                step = training_step(config, lever, images, labels)
                _warm_up(step, dev)
                rates[lever].append(_rate(step, seconds, 0, dev, CLOCKS[clock]))
                if step.train["cuda_graph"] and not step.captured:
                    raise RuntimeError("the CUDA graph was not captured (see the warning above)")
            except Exception as error:  # a lever that fails is reported, the others still run
                entry.setdefault("errors", {})[lever] = f"{type(error).__name__}: {error}"
                log(f"  failed: {error}")
            finally:
                step = None
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
        for lever in levers:
            entry["steps_per_s"][lever] = None if lever in entry.get("errors", {}) else max(rates[lever])
        if repeats > 1:
            entry["repeats"] = rates
        report["runs"].append(entry)
        if task not in report["augmentation"]:
            rate = augmentation_rate(config, images, seconds)
            report["augmentation"][task] = {
                "ms_per_batch": 1000 / rate,
                "operations": rendering_operations(config, images),
            }
            if dev.type == "cuda":
                rate = augmentation_rate(config, images, seconds, graph=True)
                report["augmentation"][task]["ms_per_batch_graph"] = 1000 / rate
    for task in dict.fromkeys(task for task, _ in pairs):
        entries = [e for e in report["runs"] if e["task"] == task]
        augmentation = report["augmentation"][task]
        alone = [e["steps_per_s"].get("fp32") or 0 for e in entries]
        augmentation["share_of_fp32_step"] = [augmentation["ms_per_batch"] * rate / 1000 for rate in alone]
        if "ms_per_batch_graph" in augmentation:
            fastest = [max(filter(None, e["steps_per_s"].values()), default=0) for e in entries]
            augmentation["graph_share_of_fastest_step"] = [
                augmentation["ms_per_batch_graph"] * rate / 1000 for rate in fastest
            ]
        if pack > 1 and pack_lever in levers:
            log(f"{task}: packing {pack} runs under {pack_lever}")
            chosen = [entries[i % len(entries)] for i in range(pack)]
            configs = [run_config(experiment, task, e["network"], 0) | {"device": dev.type} for e in chosen]
            try:
                rates = packed_rates(configs, pack_lever, str(dev), seconds)
                fractions = [r / e["steps_per_s"][pack_lever] for r, e in zip(rates, chosen, strict=True)]
                report["packing"][task] = {
                    "runs": pack,
                    "lever": pack_lever,
                    "networks": [e["network"] for e in chosen],
                    "steps_per_s": rates,
                    "speedup": sum(fractions),
                }
            except Exception as error:
                report["packing"][task] = {"runs": pack, "error": f"{type(error).__name__}: {error}"}
    report["projection"] = project(report)
    return report


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
    _warm_up(step, device)
    cuda = device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU]
    activities += [torch.profiler.ProfilerActivity.CUDA] if cuda else []
    with torch.profiler.profile(activities=activities) as profiler:
        for i in range(steps):
            with torch.profiler.record_function("step"):
                step(TrainingStep.GRAPH_WARMUP + 2 + i)
        _synchronize(device)
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
    dev, levers, pairs = _selection(experiment, device, levers, tasks, networks, log)
    profiles = []
    for task, network in pairs:
        config = run_config(experiment, task, network, experiment["seeds"][0]) | {"device": dev.type}
        for lever in levers:
            log(f"profiling {task} {network}: {lever}")
            trace = None if trace_dir is None else trace_dir / f"{task}-{network}-{lever}.json"
            profiles.append(
                {"task": task, "network": network, **profile_step(config, lever, steps, dev, trace)}
            )
    return {**_machine(dev), "profiles": profiles}


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


def _pair_ms(
    conv: torch.nn.Conv2d,
    pool: torch.nn.MaxPool2d,
    shape: torch.Size,
    input_grad: bool,
    polyphase: bool,
    seconds: float,
    device: torch.device,
) -> float:
    """ms per forward and backward of ``pool(conv(x))`` (or :func:`conv_then_pool`) for a random
    ``x`` of ``shape`` (with its gradient where ``input_grad``, as in the step); bf16,
    channels_last and ``cudnn.benchmark`` on CUDA."""
    cuda = device.type == "cuda"
    x = torch.randn(shape, device=device)
    x = (x.contiguous(memory_format=torch.channels_last) if cuda else x).requires_grad_(input_grad)

    def once(i: int) -> None:
        with torch.autocast("cuda", torch.bfloat16, enabled=cuda):
            out = conv_then_pool(conv, pool, x) if polyphase else pool(conv(x))
        out.backward(torch.ones_like(out))

    with torch.backends.cudnn.flags(enabled=True, benchmark=cuda):
        return 1000 / _rate(once, seconds, 3, device)


def time_conv_pools(config: dict[str, Any], device: torch.device, seconds: float) -> list[dict[str, Any]]:
    """Each conv + max-pool pair of a run's network that :func:`~stn.backbones.conv_then_pool`
    computes (:meth:`~stn.backbones.ConvBlock.poolable`, whether or not ``polyphase`` fuses it),
    at the input a training step gives it: ms per forward and backward as a conv then a
    max-pool, and as ``conv_then_pool``; in bf16, channels_last and with ``cudnn.benchmark`` on
    CUDA, the fastest stock setting."""
    images, labels = random_data(config, device)
    step = training_step(config, "fp32", images, labels)
    inputs: dict[ConvBlock, tuple[torch.Size, bool]] = {}

    def remember(block: ConvBlock, args: tuple[Tensor, ...]) -> None:
        inputs.setdefault(block, (args[0].shape, args[0].requires_grad))

    hooks = [
        block.register_forward_pre_hook(remember)
        for block in step.model.modules()
        if isinstance(block, ConvBlock) and ConvBlock.poolable(list(block))
    ]
    index = step.indices(0)
    step.loss(index, step.task.draw(len(index), step.generator, device))
    for hook in hooks:
        hook.remove()
    names = {block: name for name, block in step.model.named_modules()}
    timings, seen = [], set()
    for block, (shape, input_grad) in inputs.items():
        conv, pool = list(block)[:2]
        key = (tuple(shape), input_grad, tuple(conv.weight.shape), pool.stride)
        if key in seen:
            continue
        seen.add(key)
        ms = {
            "conv then pool": _pair_ms(conv, pool, shape, input_grad, False, seconds, device),
            "conv_then_pool": _pair_ms(conv, pool, shape, input_grad, True, seconds, device),
        }
        timings.append(
            {
                "block": names[block],
                "input": list(shape),
                "input_grad": input_grad,
                "conv": list(conv.weight.shape),
                "fused_by_polyphase": ConvBlock.fuses(list(block)),
                "ms": ms,
                "speedup": ms["conv then pool"] / ms["conv_then_pool"],
            }
        )
    return timings


def run_conv_pool_timings(
    experiment: dict[str, Any],
    device: str = "auto",
    tasks: Sequence[str] | None = None,
    networks: Sequence[str] | None = None,
    seconds: float = 2.0,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """:func:`time_conv_pools` for each selected run of an experiment."""
    dev, _, pairs = _selection(experiment, device, [], tasks, networks, log)
    blocks = []
    for task, network in pairs:
        log(f"timing the conv + max-pool pairs of {task} {network}")
        config = run_config(experiment, task, network, experiment["seeds"][0]) | {"device": dev.type}
        blocks += [
            {"task": task, "network": network, **entry} for entry in time_conv_pools(config, dev, seconds)
        ]
    return {**_machine(dev), "blocks": blocks}


def format_conv_pool_timings(report: dict[str, Any]) -> str:
    """One line per timed conv + max-pool pair: its shapes, both ways' ms and the ratio."""
    lines = [f"device {report['device']}, torch {report['torch']}; ms per forward and backward:"]
    for entry in report["blocks"]:
        c_out, c_in, k, _ = entry["conv"]
        ms, fused = entry["ms"], "fused" if entry["fused_by_polyphase"] else "not fused"
        lines.append(
            f"{entry['task']} {entry['network']} {entry['block']}: {c_in}->{c_out} {k}x{k} on "
            f"{tuple(entry['input'])}{' (and its gradient)' if entry['input_grad'] else ''}: conv then "
            f"pool {ms['conv then pool']:.3f}, conv_then_pool {ms['conv_then_pool']:.3f} "
            f"({entry['speedup']:.2f}x; {fused} by polyphase: true)"
        )
    return "\n".join(lines)


def project(report: dict[str, Any]) -> dict[str, Any]:
    """Device-hours of the whole grid per lever (sequential and packed) and the FLOP floor."""
    hours: dict[str, Any] = {}
    for lever in report["levers"]:
        total, packed, complete = 0.0, 0.0, True
        for entry in report["runs"]:
            rate = entry["steps_per_s"].get(lever)
            if not rate:
                complete = False
                continue
            seconds = entry["steps"] * entry["seeds"] / rate
            total += seconds
            speedup = report["packing"].get(entry["task"], {}).get("speedup") or 1.0
            packed += seconds / max(speedup, 1.0)
        hours[lever] = {"sequential": total / 3600, "packed": packed / 3600, "complete": complete}
    flops = sum(e.get("flops", 0) * e["steps"] * e["seeds"] for e in report["runs"])
    return {"hours": hours, "floor_hours": flops / (report["peak_tflops"] * 1e12) / 3600}


def format_report(report: dict[str, Any]) -> str:
    """Steps/s per run and lever, the augmentation's share, packing, and the projected hours."""
    levers = list(report["levers"])
    lines = [f"device {report['device']}, torch {report['torch']}", ""]
    task_width = max([5, *(len(entry["task"]) + 1 for entry in report["runs"])])
    network_width = max([16, *(len(entry["network"]) + 1 for entry in report["runs"])])
    lines.append(
        f"{'task':<{task_width}}{'network':<{network_width}}" + "".join(f"{lever:>14}" for lever in levers)
    )
    for entry in report["runs"]:
        rates = [entry["steps_per_s"].get(lever) for lever in levers]
        cells = "".join(f"{rate:>14.4g}" if rate else f"{'failed':>14}" for rate in rates)
        lines.append(f"{entry['task']:<{task_width}}{entry['network']:<{network_width}}{cells}")
    lines += ["", "steps/s; augmentation alone, ms per batch (share of each network's fp32 step):"]
    for task, aug in report["augmentation"].items():
        shares = ", ".join(f"{share:.0%}" for share in aug.get("share_of_fp32_step", []))
        lines.append(f"  {task}: {aug['ms_per_batch']:.2f} ms ({shares}), {aug['operations']} operations")
        if "ms_per_batch_graph" in aug:
            shares = ", ".join(f"{share:.0%}" for share in aug["graph_share_of_fastest_step"])
            lines.append(
                f"  {task} as a CUDA graph: {aug['ms_per_batch_graph']:.2f} ms ({shares} of the fastest step)"
            )
    for task, packing in report["packing"].items():
        if "speedup" in packing:
            lines.append(
                f"packing {task}: {packing['runs']} runs at once ({packing['lever']}) do "
                f"{packing['speedup']:.2f}x the work of one alone"
            )
        else:
            lines.append(f"packing {task}: {packing['error']}")
    projection = report["projection"]
    base = projection["hours"].get("today", {}).get("sequential")
    lines += ["", f"{'projected device-hours':<28}{'sequential':>12}{'packed':>10}{'vs today':>10}"]
    for lever, hours in projection["hours"].items():
        ratio = f"{base / hours['packed']:.2f}x" if base and hours["packed"] else ""
        mark = "" if hours["complete"] else " (incomplete)"
        lines.append(f"{lever + mark:<28}{hours['sequential']:>12.2f}{hours['packed']:>10.2f}{ratio:>10}")
    lines.append(
        f"floor (FLOPs / {report['peak_tflops']:.0f} TFLOP/s): {projection['floor_hours']:.2f} hours"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: benchmark a config, print the report and write it as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m stn bench",
        description=__doc__.split("\n\n")[0],
        epilog="Levers: " + ", ".join(LEVERS) + ". On a CPU the bf16 and graph levers are skipped.",
    )
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"), help="experiment YAML")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--levers", nargs="+", choices=list(LEVERS), default=list(LEVERS))
    parser.add_argument("--tasks", nargs="+", help="only these tasks (default: all of the config's)")
    parser.add_argument("--networks", nargs="+", help="only these networks (default: all)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="times each lever is timed (fresh steps); the fastest counts",
    )
    parser.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="wall",
        help="process: time steps by this process's CPU time (a CPU shared with other work)",
    )
    parser.add_argument("--pack", type=int, default=1, help="processes sharing the device (1: none)")
    parser.add_argument("--pack-lever", choices=list(LEVERS), help="lever of the packed runs (default: last)")
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="the device's rate for the floor")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="STEPS",
        help="instead of timing, profile STEPS steps of each run and lever with torch.profiler: the "
        "costliest operators, the augmentation's share (eager levers), Chrome traces",
    )
    parser.add_argument(
        "--blocks",
        action="store_true",
        help="instead of timing steps, time each conv + max-pool pair of the selected runs' networks "
        "as a conv then a pool and as one polyphase conv (stn.backbones.conv_then_pool)",
    )
    parser.add_argument(
        "--mps", action="store_true", help="time --pack runs under CUDA MPS (stn.bench_concurrency)"
    )
    parser.add_argument(
        "--streams", type=int, default=0, metavar="K", help="time K runs on CUDA streams in one process"
    )
    parser.add_argument(
        "--out", type=Path, help="JSON (default: results/bench/<config>-<device>[-profile|-blocks].json)"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.pack < 1 or args.repeats < 1 or args.peak_tflops <= 0 or args.profile < 0:
        parser.error("--seconds and --peak-tflops must be > 0, --pack and --repeats >= 1, --profile >= 0")
    if args.mps and args.pack < 2:
        parser.error("--mps times --pack K runs at once: give K >= 2")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    try:
        experiment = load_yaml(args.config)
        for task, network in runs(experiment):
            run_config(experiment, task, network, experiment["seeds"][0])
    except (ConfigError, KeyError, OSError) as error:
        parser.error(f"--config {args.config}: {error}")
    if args.threads:
        torch.set_num_threads(args.threads)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    concurrency = args.mps or args.streams
    suffix = (
        "-profile" if args.profile else "-blocks" if args.blocks else "-concurrency" if concurrency else ""
    )
    out = args.out or Path("results/bench") / f"{args.config.stem}-{'cuda' if cuda else 'cpu'}{suffix}.json"
    runs_chosen = {"tasks": args.tasks, "networks": args.networks, "log": log}
    if args.blocks:
        report = run_conv_pool_timings(experiment, args.device, seconds=args.seconds, **runs_chosen)
        text, complete = format_conv_pool_timings(report), True
    elif concurrency:
        from stn.bench_concurrency import format_concurrency, measure_concurrency

        dev, _, pairs = _selection(experiment, args.device, [], **runs_chosen)
        lever, most_mps = args.pack_lever or args.levers[-1], args.pack if args.mps else 0
        report = measure_concurrency(experiment, pairs, dev, lever, args.seconds, most_mps, args.streams, log)
        text, complete = format_concurrency(report), True
    elif args.profile:
        traces = out.parent / "traces"
        report = run_profiles(
            experiment, args.device, args.levers, steps=args.profile, trace_dir=traces, **runs_chosen
        )
        text, complete = format_profiles(report) + f"\n\nChrome traces in {traces}", True
    else:
        report = run_benchmark(
            experiment,
            args.device,
            args.levers,
            seconds=args.seconds,
            pack=args.pack,
            pack_lever=args.pack_lever,
            peak_tflops=args.peak_tflops,
            repeats=args.repeats,
            clock=args.clock,
            **runs_chosen,
        )
        text = format_report(report)
        complete = all(math.isfinite(h["sequential"]) for h in report["projection"]["hours"].values())
    report["config"] = str(args.config)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_json(report, out)
    print(text)
    print(f"\nwritten: {out}")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
