"""A run's evaluation made at the end of its training job, and taken by its evaluation job.

Each job of the workflow starts a Python process, and importing torch costs it seconds on a small
CPU: more than evaluating a run (about a second). The training job has torch and the trained
network at hand, so when its task's test set already exists it evaluates the run too and writes
the metrics beside the checkpoint (:data:`MEMO_NAME`), under the key they were made with: the
SHA-256 of the checkpoint, of the test set and of each code input of the evaluation job, and the
device. The evaluation job, still one per run, so that the workflow re-evaluates exactly what an
edit touches, takes those metrics when its own inputs give the same key, without importing torch;
else (the evaluation's code or the test set changed since, or the memo is missing or damaged) it
evaluates. So the metrics are the same as without the memo, whichever job computed them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from stn.io import save_json, sha256sum

MEMO_NAME = "evaluation_memo.json"


def memo_path(checkpoint: Path | str) -> Path:
    """Where the training job of ``checkpoint`` leaves its evaluation."""
    return Path(checkpoint).with_name(MEMO_NAME)


def memo_key(
    checkpoint: Path | str, test_set: Path | str, code: Iterable[str], device: str
) -> dict[str, Any]:
    """What an evaluation's result depends on: its inputs' contents and the device it ran on."""
    return {
        "checkpoint": sha256sum(checkpoint),
        "test_set": sha256sum(test_set),
        "code": {str(path): sha256sum(path) for path in sorted(map(str, code))},
        "device": device,
    }


def write_memo(checkpoint: Path | str, key: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """Leave ``metrics``, made under ``key``, for the evaluation job of ``checkpoint``."""
    path = memo_path(checkpoint)
    save_json({"key": key, "metrics": metrics}, path)
    return path


def remembered(checkpoint: Path | str, key: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics the training job of ``checkpoint`` left under ``key``; None if it left none
    under that key (or its memo cannot be read)."""
    try:
        memo = json.loads(memo_path(checkpoint).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(memo, dict) or memo.get("key") != key:
        return None
    return memo.get("metrics")
