"""Training throughput of an experiment config, and what its whole grid costs in device-hours.

The command line ``python -m stn bench``: it times training steps under each lever
(:mod:`stn.bench.throughput`), or profiles them (``--profile``, :mod:`stn.bench.profiling`),
times conv + max-pool pairs (``--blocks``, :mod:`stn.bench.blocks`) or concurrent runs
(``--pack K --mps`` and ``--streams K``, :mod:`stn.bench.concurrency`); it prints the report and
writes it as JSON under ``results/bench/``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import torch

from stn.bench.blocks import format_conv_pool_timings, run_conv_pool_timings
from stn.bench.concurrency import format_concurrency, measure_concurrency
from stn.bench.levers import LEVERS
from stn.bench.profiling import format_profiles, run_profiles
from stn.bench.selection import select_runs
from stn.bench.throughput import format_report, run_benchmark
from stn.bench.timing import CLOCKS
from stn.config import ConfigError, load_yaml
from stn.experiment import run_config, runs
from stn.io import save_json


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m stn bench``."""
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
        "as a conv then a pool and as one polyphase conv (stn.backbones.blocks.conv_then_pool)",
    )
    parser.add_argument(
        "--mps", action="store_true", help="time --pack runs under CUDA MPS (stn.bench.concurrency)"
    )
    parser.add_argument(
        "--streams", type=int, default=0, metavar="K", help="time K runs on CUDA streams in one process"
    )
    parser.add_argument(
        "--out", type=Path, help="JSON (default: results/bench/<config>-<device>[-profile|-blocks].json)"
    )
    return parser


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """The arguments and the experiment they name, both checked before anything is measured."""
    parser = build_parser()
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
    return args, experiment


def _out_path(args: argparse.Namespace) -> Path:
    """``--out``, or ``results/bench/<config>-<device>[-profile|-blocks|-concurrency].json``."""
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    concurrency = args.mps or args.streams
    suffix = (
        "-profile" if args.profile else "-blocks" if args.blocks else "-concurrency" if concurrency else ""
    )
    return args.out or Path("results/bench") / f"{args.config.stem}-{'cuda' if cuda else 'cpu'}{suffix}.json"


def _log(message: str) -> None:
    """Progress, on stderr (the report goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


def _measure(
    args: argparse.Namespace, experiment: dict[str, Any], out: Path
) -> tuple[dict[str, Any], str, bool]:
    """The measurement ``args`` ask for: its report, the report's text and whether it is complete."""
    runs_chosen = {"tasks": args.tasks, "networks": args.networks, "log": _log}
    if args.blocks:
        report = run_conv_pool_timings(experiment, args.device, seconds=args.seconds, **runs_chosen)
        return report, format_conv_pool_timings(report), True
    if args.mps or args.streams:
        dev, _, pairs = select_runs(experiment, args.device, [], **runs_chosen)
        lever, most_mps = args.pack_lever or args.levers[-1], args.pack if args.mps else 0
        report = measure_concurrency(
            experiment, pairs, dev, lever, args.seconds, most_mps, args.streams, _log
        )
        return report, format_concurrency(report), True
    if args.profile:
        traces = out.parent / "traces"
        report = run_profiles(
            experiment, args.device, args.levers, steps=args.profile, trace_dir=traces, **runs_chosen
        )
        return report, format_profiles(report) + f"\n\nChrome traces in {traces}", True
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
    complete = all(math.isfinite(h["sequential"]) for h in report["projection"]["hours"].values())
    return report, format_report(report), complete


def main(argv: list[str] | None = None) -> int:
    """Command line: benchmark a config, print the report and write it as JSON."""
    args, experiment = _parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = _out_path(args)
    report, text, complete = _measure(args, experiment, out)
    report["config"] = str(args.config)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_json(report, out)
    print(text)
    print(f"\nwritten: {out}")
    return 0 if complete else 1
