"""What produced a result: the code version and the machine a run trained on.

Training stores :func:`describe` in every checkpoint's ``train_stats`` under the key
:data:`TRAIN_STATS_KEY`; evaluation copies ``train_stats`` into ``metrics.json``, so every run's
metrics say which commit and which machine trained it. :func:`summarise` gathers that over the
runs, with the config files and the raw data's checksums from the prepared data sets' manifests,
and :func:`front_page_rst` writes it as the reStructuredText of the report's front page.
"""

from __future__ import annotations

import json
import platform
import socket
import subprocess
from collections import Counter
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import torch

from stn.io import sha256sum

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


def _tally(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct records, each with the number of times it occurs as ``runs``, most common first."""
    counts = Counter(json.dumps(record, sort_keys=True) for record in records)
    return [{**json.loads(record), "runs": runs} for record, runs in counts.most_common()]


def summarise(
    config_files: Sequence[Path | str],
    metrics_paths: Sequence[Path | str],
    manifest_paths: Sequence[Path | str],
) -> dict[str, Any]:
    """What produced a workflow's results: its config files (path and SHA-256); the distinct code
    versions and environments its runs trained with, each with its number of runs, and how many
    runs recorded none (``unrecorded``); the SHA-256 of every raw file of each data set, keyed by
    the data set's name (a manifest's file name, ``<dataset>.json``); and per task the number of
    runs and their total training time in seconds."""
    provenances, unrecorded, training = [], 0, {}
    for path in metrics_paths:
        metrics = json.loads(Path(path).read_text())
        if TRAIN_STATS_KEY in metrics:
            provenances.append(metrics[TRAIN_STATS_KEY])
        else:
            unrecorded += 1
        if "train_seconds" not in metrics:
            raise KeyError(f"{path}: no `train_seconds` (not the metrics of a trained run?)")
        task = training.setdefault(metrics["task"], {"runs": 0, "train_seconds": 0.0})
        task["runs"] += 1
        task["train_seconds"] += metrics["train_seconds"]
    return {
        "config_files": [{"path": str(path), "sha256": sha256sum(path)} for path in config_files],
        "code": _tally([provenance["code"] for provenance in provenances]),
        "environments": _tally([provenance["environment"] for provenance in provenances]),
        "unrecorded": unrecorded,
        "data": {Path(path).stem: json.loads(Path(path).read_text())["raw_files"] for path in manifest_paths},
        "training": training,
    }


ENVIRONMENT_COLUMNS = {
    "python": "Python",
    "torch": "torch",
    "cuda": "CUDA",
    "cudnn": "cuDNN",
    "device": "device",
    "processor": "GPU or CPU",
    "host": "host",
}


def _cell(value: Any) -> str:
    """A table cell: ``None`` as "none", anything else as inline literal text."""
    return "none" if value is None else f"``{value}``"


def _list_table(header: Sequence[str], rows: Sequence[Sequence[str]], empty: str = "None.") -> list[str]:
    """A table of ``rows`` under ``header``; the sentence ``empty`` where there are no rows."""
    if not rows:
        return [empty, ""]
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines += [f"   * - {row[0]}", *(f"     - {cell}" for cell in row[1:])]
    return [*lines, ""]


def _section(title: str, *body: str) -> list[str]:
    return [title, "-" * len(title), "", *body]


def _duration(seconds: float) -> str:
    minutes, second = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{second:02d}"


def _code_section(summary: dict[str, Any]) -> list[str]:
    modified = {None: "unknown", False: "no", True: "yes: tracked files differed from the commit"}
    rows = [
        [
            _cell(version["commit"]) if version["commit"] else "unknown (not a git checkout)",
            modified[version["modified"]],
            str(version["runs"]),
        ]
        for version in summary["code"]
    ]
    text = "The git commit of the ``stn`` package each run trained with."
    return [
        *_section("Code version", text, ""),
        *_list_table(["commit", "modified", "runs"], rows, "None recorded."),
    ]


def _environment_section(summary: dict[str, Any]) -> list[str]:
    rows = [
        [*(_cell(environment.get(key)) for key in ENVIRONMENT_COLUMNS), str(environment["runs"])]
        for environment in summary["environments"]
    ]
    text = "The software and hardware each run trained on."
    return [
        *_section("Environment", text, ""),
        *_list_table([*ENVIRONMENT_COLUMNS.values(), "runs"], rows, "None recorded."),
    ]


def _data_section(summary: dict[str, Any]) -> list[str]:
    rows = [
        [_cell(dataset), _cell(path), _cell(sha256)]
        for dataset, files in summary["data"].items()
        for path, sha256 in files.items()
    ]
    lines = _section("Raw data", "The SHA-256 of every raw file the data sets were prepared from.", "")
    lines += _list_table(["data set", "file", "SHA-256"], rows) if rows else []
    packaged = [_cell(dataset) for dataset, files in summary["data"].items() if not files]
    if packaged:
        lines += [f"No raw files (data shipped with a Python package): {', '.join(packaged)}.", ""]
    return lines


def _training_section(summary: dict[str, Any]) -> list[str]:
    tasks = summary["training"]
    rows = [
        [_cell(task), str(runs["runs"]), _duration(runs["train_seconds"])] for task, runs in tasks.items()
    ]
    runs, seconds = sum(t["runs"] for t in tasks.values()), sum(t["train_seconds"] for t in tasks.values())
    rows.append(["all", str(runs), _duration(seconds)])
    text = "The training time of each task's runs, summed (hours:minutes:seconds)."
    return [*_section("Training time", text, ""), *_list_table(["task", "runs", "training time"], rows)]


def front_page_rst(summary: dict[str, Any]) -> str:
    """The sections of the report's front page that say what produced it, from :func:`summarise`."""
    configs = [[_cell(file["path"]), _cell(file["sha256"])] for file in summary["config_files"]]
    lines = _section("Config files", "The config files the workflow ran with, in the order given.", "")
    lines += _list_table(["file", "SHA-256"], configs)
    lines += _code_section(summary) + _environment_section(summary)
    if summary["unrecorded"]:
        unrecorded = f"Runs that recorded no code version or environment: {summary['unrecorded']}."
        lines += [f"{unrecorded} Retrain them to record it.", ""]
    lines += _data_section(summary) + _training_section(summary)
    return "\n".join(lines)
