"""Table 1's R column against the paper: train an experiment's R runs of one seed, evaluate
them, and print each network's test error beside the paper's.

    python -m stn.fidelity --config config/paper.yaml --state DIR [--parallel K] [--deadline S]
    python -m stn.fidelity --config config/paper.yaml --state DIR --dry-run   # CPU, a few steps

Each run trains in its own process (``python -m stn train``), ``K`` at once, into
``DIR/NETWORK/``. A run stopped at the deadline keeps its resumable state there
(``model.pt.state``, every ``checkpoint_every`` steps), and the next call with the same ``DIR``
continues it; finished runs are evaluated once (``summary.json``). ``tools/gpu-check.sh
fidelity`` packs ``DIR`` into one file between GPU sessions.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from stn.config import load_yaml
from stn.experiment import deep_merge, run_config

TASK = "R"
PAPER_TABLE = "mnist"
# the dry run: the embedded digits (1000 test images), a few small steps on the CPU
DRY_RUN = {
    "device": "cpu",
    "datasets": {"mnist": {"source": "embedded"}},
    "train": {"iterations": 6, "checkpoint_every": 3, "batch_size": 16, "eval_batch_size": 500},
}
UNFINISHED_EXIT = 3


def fidelity_configs(
    experiment: dict[str, Any], networks: list[str], seed: int, dry_run: bool = False
) -> dict[str, dict[str, Any]]:
    """The resolved run configs of ``networks`` on task R with ``seed``, as the experiment
    configures them (with :data:`DRY_RUN` merged over it for a dry run)."""
    if TASK not in experiment["tasks"]:
        raise ValueError(f"the experiment has no task {TASK} (tasks: {', '.join(experiment['tasks'])})")
    if dry_run:
        experiment = deep_merge(experiment, DRY_RUN)
    return {network: run_config(experiment, TASK, network, seed) for network in networks}


def _checkpoint(state: Path, network: str) -> Path:
    return state / network / "model.pt"


def train_all(configs: dict[str, dict[str, Any]], state: Path, parallel: int, deadline: float) -> list[str]:
    """Train every run without a checkpoint in ``state``, ``parallel`` processes at once, until
    ``deadline`` (``time.monotonic()``); then stop those still running, which keep their
    resumable state. Returns the networks left unfinished."""
    for network, config in configs.items():
        written = state / network / "config.yaml"
        if written.exists() and yaml.safe_load(written.read_text()) != config:
            raise ValueError(
                f"{written.parent} holds a run of another config: delete it, or use another --state"
            )
    pending = [n for n in configs if not _checkpoint(state, n).exists()]
    if pending:
        print(f"training: {', '.join(pending)}", flush=True)
    running: dict[str, subprocess.Popen] = {}
    try:
        while pending or running:
            while pending and len(running) < parallel and time.monotonic() < deadline:
                network = pending.pop(0)
                folder = _checkpoint(state, network).parent
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "config.yaml").write_text(yaml.safe_dump(configs[network], sort_keys=False))
                command = [sys.executable, "-m", "stn", "train", "--config", str(folder / "config.yaml")]
                command += ["--checkpoint", str(_checkpoint(state, network)), "--quiet"]
                with open(folder / "train.log", "a") as log:
                    running[network] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            for network, process in list(running.items()):
                if process.poll() is not None:
                    del running[network]
                    if process.returncode:
                        log = (state / network / "train.log").read_text().splitlines()[-15:]
                        raise RuntimeError(f"training {network} failed:\n" + "\n".join(log))
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    finally:
        for process in running.values():
            process.terminate()
            process.wait()
    return [n for n in configs if not _checkpoint(state, n).exists()]


def network_summary(checkpoint: Path, test_set: Path, out: Path, device: str) -> dict[str, Any]:
    """A trained run's test error, *undone*, pose spread and the slope of its angle histogram
    (the Deming slope of predicted against applied angle: -1 every rotation undone, 0 none),
    written to ``out`` and reused from there."""
    if out.exists():
        return json.loads(out.read_text())
    from stn.devices import resolve_device
    from stn.evaluation import evaluate, load_test_set
    from stn.invariance import predicted_angles
    from stn.statistics import deming_slope
    from stn.training import load_checkpoint

    metrics = evaluate(checkpoint, test_set, device=device)
    slope = None
    model, content = load_checkpoint(checkpoint, resolve_device(device, claim=False))
    if model.spec.transformers:
        test = load_test_set(test_set, content["config"])
        poses = test["poses"] if model.needs_pose else None
        predicted = predicted_angles(
            model, test["images"], poses, content["config"]["train"]["eval_batch_size"]
        )
        slope = deming_slope(test["params"]["angle"].numpy(), predicted.numpy())
    keys = ("network", "test_error", "test_size", "rotation_undone", "pose_spread", "train_seconds", "device")
    summary = {key: metrics[key] for key in keys} | {"angle_slope": slope}
    out.write_text(json.dumps(summary, indent=2))
    return summary


def binomial_se(error: float, images: int) -> float:
    """The binomial standard error, in points, of a test error of ``error`` % on ``images``."""
    p = error / 100
    return 100 * math.sqrt(p * (1 - p) / images)


def _cell(value: float | None, fmt: str) -> str:
    return "" if value is None else fmt.format(value)


def summary_table(summaries: list[dict[str, Any]], paper: dict[str, float]) -> str:
    """A markdown table: per network the paper's R error and ours, the difference and the
    binomial standard error of ours, whether they differ by more than twice that, and
    *undone*, pose spread and angle slope."""
    lines = [
        "| network | paper (%) | ours (%) | ours - paper | SE | > 2 SE | undone | spread (°) | slope |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in summaries:
        ours, theirs = row["test_error"], paper.get(row["network"])
        se = binomial_se(ours, row["test_size"])
        difference = None if theirs is None else ours - theirs
        beyond = "" if difference is None else "yes" if abs(difference) > 2 * se else "no"
        cells = [
            row["network"],
            _cell(theirs, "{:.2f}"),
            f"{ours:.2f}",
            _cell(difference, "{:+.2f}"),
            f"{se:.2f}",
            beyond,
            _cell(row["rotation_undone"], "{:.2f}"),
            _cell(row["pose_spread"], "{:.1f}"),
            _cell(row["angle_slope"], "{:+.2f}"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stn.fidelity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config/paper.yaml"), help="experiment config")
    parser.add_argument(
        "--state", type=Path, required=True, help="folder of checkpoints, resume states, metrics"
    )
    parser.add_argument("--networks", nargs="+", help="default: the experiment's networks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=1, help="runs training at once")
    parser.add_argument("--deadline", type=float, default=math.inf, help="seconds this call may train")
    parser.add_argument("--dry-run", action="store_true", help="the CPU, embedded digits, a few steps")
    args = parser.parse_args(argv)
    from stn.evaluation import prepare_test_set
    from stn.report.tables import paper_results

    began = time.monotonic()
    experiment = load_yaml(args.config)
    configs = fidelity_configs(experiment, args.networks or experiment["networks"], args.seed, args.dry_run)
    args.state.mkdir(parents=True, exist_ok=True)
    unfinished = train_all(configs, args.state, max(args.parallel, 1), began + args.deadline)
    if unfinished:
        print(
            f"unfinished after {time.monotonic() - began:.0f} s: {', '.join(unfinished)}; their states "
            f"are in {args.state}: run again with the same --state to resume them"
        )
        return UNFINISHED_EXIT
    first = next(iter(configs.values()))
    test_set = args.state / f"test-{TASK}.pt"
    if not test_set.exists():
        prepare_test_set(first, test_set)
    summaries = [
        network_summary(
            _checkpoint(args.state, n), test_set, args.state / n / "summary.json", config["device"]
        )
        for n, config in configs.items()
    ]
    seconds = sum(s["train_seconds"] for s in summaries)
    print(
        f"{args.config}, task {TASK}, seed {args.seed}, {first['train']['iterations']} steps, "
        f"{summaries[0]['device']}: {seconds:.0f} s of training in all"
    )
    print(summary_table(summaries, {n: v[TASK] for n, v in paper_results()[PAPER_TABLE].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
