"""Steps/s of an experiment's runs under each lever, and the device-hours its whole grid projects.

``python -m stn bench --config config/paper.yaml --device cuda`` times the library's own
training step (:class:`stn.training.TrainingStep`: batch, augmentation, forward, backward,
update) for every task and network the config trains, at the config's sizes, under each lever
(:mod:`stn.bench.levers`) side by side in one run.

Each measurement warms its step up first (the epoch's partial last batch, the eager steps,
the graph capture); ``--repeats N`` times each lever N times on fresh steps, the levers
taking turns, and keeps the fastest.

It also times the augmentation alone (its share of a step), counts each network's FLOPs (the
floor: FLOPs over ``--peak-tflops``), and measures packing: ``--pack K`` training processes
sharing one device, each running a different network, against each one alone. The report
projects the grid's device-hours (steps x seeds / rate, summed) for every lever, sequential
and packed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from stn.bench.concurrency import packed_rates
from stn.bench.counting import rendering_operations, step_flops
from stn.bench.levers import LEVERS, random_data, training_step
from stn.bench.selection import machine, select_runs
from stn.bench.timing import CLOCKS, calls_per_second, warm_up
from stn.config import task_spec
from stn.experiment import run_config
from stn.training import capture_cuda_graph, total_steps


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
        return calls_per_second(augment_once, seconds, 2, device)
    index = torch.randint(len(images), (batch,), device=device, generator=generator)
    draws = task.draw(batch, generator, device)
    rendering, _ = capture_cuda_graph(lambda: task.render(images[index], draws), device)
    return calls_per_second(lambda i: rendering.replay(), seconds, 2, device)


def _time_levers(
    config: dict[str, Any],
    name: str,
    levers: Sequence[str],
    images: Tensor,
    labels: Tensor,
    seconds: float,
    repeats: int,
    clock: str,
    log: Callable[[str], None],
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Steps/s of the run ``name``'s step under each lever, ``repeats`` times on fresh steps (the
    levers taking turns), and the error of each lever that failed (which is not timed again)."""
    device = images.device
    rates: dict[str, list[float]] = {lever: [] for lever in levers}
    errors: dict[str, str] = {}
    for attempt, lever in itertools.product(range(repeats), levers):
        if lever in errors:
            continue
        log(f"{name}: {lever}" + (f" ({attempt + 1} of {repeats})" if repeats > 1 else ""))
        try:
            step = training_step(config, lever, images, labels)
            warm_up(step, device)
            rates[lever].append(calls_per_second(step, seconds, 0, device, CLOCKS[clock]))
            if step.train["cuda_graph"] and not step.captured:
                raise RuntimeError("the CUDA graph was not captured (see the warning above)")
        except Exception as error:  # a lever that fails is reported, the others still run
            errors[lever] = f"{type(error).__name__}: {error}"
            log(f"  failed: {error}")
        finally:
            step = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rates, errors


def _augmentation(config: dict[str, Any], images: Tensor, seconds: float) -> dict[str, Any]:
    """The task's augmentation alone: ms per batch, device operations and (CUDA) ms as a graph."""
    augmentation = {
        "ms_per_batch": 1000 / augmentation_rate(config, images, seconds),
        "operations": rendering_operations(config, images),
    }
    if images.device.type == "cuda":
        augmentation["ms_per_batch_graph"] = 1000 / augmentation_rate(config, images, seconds, graph=True)
    return augmentation


def _add_shares(augmentation: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    """The augmentation's share of each of a task's runs' fp32 step (and, as a graph, fastest step)."""
    alone = [e["steps_per_s"].get("fp32") or 0 for e in entries]
    augmentation["share_of_fp32_step"] = [augmentation["ms_per_batch"] * rate / 1000 for rate in alone]
    if "ms_per_batch_graph" in augmentation:
        fastest = [max(filter(None, e["steps_per_s"].values()), default=0) for e in entries]
        augmentation["graph_share_of_fastest_step"] = [
            augmentation["ms_per_batch_graph"] * rate / 1000 for rate in fastest
        ]


def _packing(
    experiment: dict[str, Any],
    task: str,
    entries: list[dict[str, Any]],
    pack: int,
    lever: str,
    device: torch.device,
    seconds: float,
) -> dict[str, Any]:
    """``pack`` of a task's runs (its networks in turn) training at once under ``lever``: their
    steps/s and the speedup over each alone, or the error that stopped them."""
    chosen = [entries[i % len(entries)] for i in range(pack)]
    configs = [run_config(experiment, task, e["network"], 0) | {"device": device.type} for e in chosen]
    try:
        rates = packed_rates(configs, lever, str(device), seconds)
        fractions = [r / e["steps_per_s"][lever] for r, e in zip(rates, chosen, strict=True)]
        return {
            "runs": pack,
            "lever": lever,
            "networks": [e["network"] for e in chosen],
            "steps_per_s": rates,
            "speedup": sum(fractions),
        }
    except Exception as error:
        return {"runs": pack, "error": f"{type(error).__name__}: {error}"}


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
    ``clock``: ``wall``, or ``process`` (CPU time, :data:`~stn.bench.timing.CLOCKS`; CPU only)
    for a loaded machine. With ``repeats`` > 1 each lever is timed that many times on a fresh
    step, the levers taking turns, and the fastest counts (all are kept under ``repeats``): a
    disturbed measurement does not decide a comparison.

    Returns the JSON report (see :func:`format_report` for its reading).
    """
    dev, levers, pairs = select_runs(experiment, device, levers, tasks, networks, log)
    if clock == "process" and dev.type != "cpu":
        raise ValueError("--clock process counts CPU time only: time a GPU with --clock wall")
    pack_lever = pack_lever or levers[-1]
    report: dict[str, Any] = {
        **machine(dev),
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
        entry: dict[str, Any] = {
            "task": task,
            "network": network,
            "batch_size": config["train"]["batch_size"],
            "steps": total_steps(config, len(images)),
            "seeds": len(experiment["seeds"]),
            "steps_per_s": {},
            # the plain network's work (fp32, no polyphase), for the floor: the same whatever the levers
            "flops": step_flops(training_step(config, "fp32", images, labels)),
        }
        name = f"{task} {network}"
        rates, errors = _time_levers(config, name, levers, images, labels, seconds, repeats, clock, log)
        if errors:
            entry["errors"] = errors
        entry["steps_per_s"] = {lever: None if lever in errors else max(rates[lever]) for lever in levers}
        if repeats > 1:
            entry["repeats"] = rates
        report["runs"].append(entry)
        if task not in report["augmentation"]:
            report["augmentation"][task] = _augmentation(config, images, seconds)
    for task in dict.fromkeys(task for task, _ in pairs):
        entries = [e for e in report["runs"] if e["task"] == task]
        _add_shares(report["augmentation"][task], entries)
        if pack > 1 and pack_lever in levers:
            log(f"{task}: packing {pack} runs under {pack_lever}")
            report["packing"][task] = _packing(experiment, task, entries, pack, pack_lever, dev, seconds)
    report["projection"] = project(report)
    return report


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
