"""What the bench's tests share: a tiny experiment a CPU times in a fraction of a second."""

from __future__ import annotations

from tests.conftest import TINY_BACKBONE


def tiny_experiment() -> dict:
    return {
        "datasets": {"mnist": {"source": "embedded"}},
        "tasks": {"R": {"dataset": "mnist", "canvas": 28, "rotation": 90}},
        "networks": ["CNN", "STN-C1"],
        "seeds": [0, 1, 2],
        "backbones": {"mnist": {"name": "mnist", "args": TINY_BACKBONE}},
        "train": {"batch_size": 16, "epochs": None, "iterations": 500},
        "report": {"tables": {"oracle": {"tasks": ["R"], "networks": ["CNN", "STN-C1-oracle"]}}},
    }
