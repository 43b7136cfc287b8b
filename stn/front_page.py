"""The report's front page: what produced a workflow's results, gathered from its config files,
its runs' metrics (each records its code version and environment, :mod:`stn.provenance`) and its
prepared data sets' manifests (the SHA-256 of every raw file), and written as reStructuredText.

Kept apart from :mod:`stn.provenance`, which training imports, so that editing the front page
retrains nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stn.io import sha256sum
from stn.provenance import TRAIN_STATS_KEY


def _tally(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct records, each with the number of times it occurs as ``runs``, most common first."""
    counts = Counter(json.dumps(record, sort_keys=True) for record in records)
    return [{**json.loads(record), "runs": runs} for record, runs in counts.most_common()]


def summarise(
    config_files: Sequence[Path | str],
    metrics_paths: Sequence[Path | str],
    manifest_paths: Sequence[Path | str],
) -> dict[str, Any]:
    """What produced a workflow's results: its config files (path, SHA-256, text); the distinct code
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
        "config_files": [
            {"path": str(path), "sha256": sha256sum(path), "text": Path(path).read_text()}
            for path in config_files
        ],
        "code": _tally([provenance["code"] for provenance in provenances]),
        "environments": _tally([provenance["environment"] for provenance in provenances]),
        "unrecorded": unrecorded,
        "data": {Path(path).stem: json.loads(Path(path).read_text())["raw_files"] for path in manifest_paths},
        "training": training,
    }


ENVIRONMENT_COLUMNS = {
    "python": "Python",
    "torch": "torch",
    "cuda": "CUDA (torch's build)",
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
    modified = {None: "unknown", False: "no", True: "yes"}
    rows = [
        [
            _cell(version["commit"]) if version["commit"] else "unknown (not a git checkout)",
            modified[version["modified"]],
            str(version["runs"]),
        ]
        for version in summary["code"]
    ]
    text = (
        "The git commit of the ``stn`` package each run trained with; *modified*: its tracked files differed."
    )
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
