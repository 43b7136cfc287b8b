"""A run's training log on disk: ``train_log.csv`` beside its checkpoint, and TensorBoard events.

The rows (:meth:`stn.monitor.TrainingMonitor.read`) are appended to the CSV as they come and
kept whole in the run's resume state. A resumed run rewrites the CSV from the rows of its state,
so rows written after that state by a killed run are dropped and recomputed: the log of an
interrupted run equals an uninterrupted run's, row for row (but for the times).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stn.io import atomic_write

LOG_NAME = "train_log.csv"
TIMING_COLUMNS = ("images_per_second",)
"""Columns that measure time: they differ between two runs of the same config."""


def log_path(checkpoint: Path | str) -> Path:
    """Where the training log of the run whose final checkpoint is ``checkpoint`` lives:
    ``train_log.csv`` beside a ``model.pt`` (the workflow's runs, one to a folder), else
    ``<stem>.train_log.csv``, so that checkpoints sharing a folder keep their own logs."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(LOG_NAME if checkpoint.stem == "model" else f"{checkpoint.stem}.{LOG_NAME}")


def read_log(path: Path | str) -> list[dict[str, float]]:
    """The rows of a ``train_log.csv``, as numbers."""
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _csv_text(rows: Sequence[dict[str, float]], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def tensorboard_writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``; a clear error where the package is missing."""
    from stn.config import ConfigError  # here: reading a log (the report's jobs) needs no torch

    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "train.tensorboard: true needs the tensorboard package: "
            "pip install -e '.[tensorboard]' (or set train.tensorboard: false)"
        ) from None
    return SummaryWriter


class TrainLog:
    """The log of one run: ``rows`` so far (from its resume state), the CSV at ``path`` and,
    with ``tensorboard``, event files in its folder (events from step ``start`` on, left by a
    killed run, are purged)."""

    def __init__(self, path: Path, rows: Sequence[dict[str, float]], start: int, tensorboard: bool) -> None:
        self.path, self.rows = path, list(rows)
        self._rewrite()
        self.writer = tensorboard_writer_class()(str(path.parent), purge_step=start) if tensorboard else None

    def _rewrite(self) -> None:
        text = _csv_text(self.rows, header=True) if self.rows else ""
        atomic_write(self.path, lambda tmp: tmp.write_text(text))

    def append(self, row: dict[str, float]) -> None:
        """Add a row: one line appended to the CSV, and its scalars to TensorBoard."""
        self.rows.append(row)
        with open(self.path, "a", newline="") as handle:
            handle.write(_csv_text([row], header=len(self.rows) == 1))
        if self.writer is not None:
            step = int(row["step"])
            for key, value in row.items():
                if key != "step":
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        """Write the whole log once more, atomically, and close the event file."""
        self._rewrite()
        if self.writer is not None:
            self.writer.close()
