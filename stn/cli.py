"""Command line: ``python -m stn {variants,prepare,train,evaluate,bench,...} --help``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from stn.backbones import build_backbone, list_backbones
from stn.config import ConfigError, load_yaml, resolve_run_config
from stn.variants import GRAMMAR, PAPER_NETWORKS, example_names

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(function: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[function.__name__.removeprefix("cmd_")] = function
    return function


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested mapping."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return config


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The resolved run config of ``--config`` with the ``--set`` overrides applied."""
    config = apply_overrides(load_yaml(args.config) if args.config else {}, args.set)
    return resolve_run_config(config, where=str(args.config or "command-line config"))


@command
def cmd_variants(args: argparse.Namespace) -> int:
    backbones = [args.backbone] if args.backbone else list_backbones()
    print(f"Grammar: {GRAMMAR}\n(see `python -c 'import stn.variants; help(stn.variants)'`)\n")
    print("Networks of the paper:", ", ".join(PAPER_NETWORKS), "\n")
    for name in backbones:
        blocks = build_backbone(name).num_blocks
        print(f"{name} ({blocks} blocks, depths 0-{blocks}):")
        print("  " + " ".join(example_names(blocks)))
    return 0


@command
def cmd_prepare(args: argparse.Namespace) -> int:
    from stn.evaluation import prepare_test_set

    print(prepare_test_set(config_from_args(args), args.out))
    return 0


@command
def cmd_train(args: argparse.Namespace) -> int:
    from stn.training import train

    stats = train(config_from_args(args), args.checkpoint, progress=not args.quiet)
    print(json.dumps(stats, indent=2))
    return 0


@command
def cmd_evaluate(args: argparse.Namespace) -> int:
    from stn.evaluation import evaluate

    metrics = evaluate(args.checkpoint, args.test_set, args.out, args.device)
    print(
        f"{metrics['network']} {metrics['task']} seed {metrics['seed']}: "
        f"test error {metrics['test_error']:.2f}% on {metrics['test_size']} images"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    variants = sub.add_parser("variants", help="list the network names and their grammar")
    variants.add_argument("--backbone", choices=list_backbones())

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="run config YAML (see stn/schemas/run.schema.yaml)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value, e.g. --set train.lr=0.01 (repeatable)",
        )

    prepare = sub.add_parser("prepare", help="generate a task's fixed test set")
    with_config(prepare)
    prepare.add_argument("--out", type=Path, required=True)

    train = sub.add_parser("train", help="train one network (resumes an interrupted run)")
    with_config(train)
    train.add_argument("--checkpoint", type=Path, required=True, help="final checkpoint path")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = sub.add_parser("evaluate", help="evaluate a checkpoint on a test set")
    evaluate.add_argument("--checkpoint", type=Path, required=True)
    evaluate.add_argument("--test-set", type=Path, required=True)
    evaluate.add_argument("--out", type=Path, help="metrics JSON")
    evaluate.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    sub.add_parser("bench", help="augmentation and training-step throughput", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from stn.bench.cli import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    from stn.io import DiskFullError
    from stn.training import GpuOutOfMemory, TrainingDiverged

    try:
        return COMMANDS[args.command](args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (TrainingDiverged, GpuOutOfMemory, DiskFullError) as error:  # each message names the fix
        print(f"error: {error}", file=sys.stderr)
        return 1


def run() -> None:
    """The console entry point (``stn``, ``python -m stn``): :func:`main`, then an exit that
    skips collecting what the command made (:func:`stn.job.freeze_for_exit`)."""
    from stn.job import freeze_for_exit

    status = main()
    freeze_for_exit()
    sys.exit(status)
