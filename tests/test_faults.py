"""Fault injection: a damaged resume state costs only the progress it held, never a finished run.

(kill -9 mid-training is covered by tests/test_training.py, a damaged checkpoint by
test_damaged_checkpoint_names_the_file_and_how_to_retrain_it there, a second concurrent run and a
stale lock by tests/test_run_sh.py, damaged downloads by tests/data/test_download.py.)
"""

from __future__ import annotations

import pytest
import torch

import stn.training
from stn.io import digest_path, load_torch
from stn.training import state_path, train
from tests.conftest import tiny_config


class Interrupted(Exception):
    pass


def interrupt_at(monkeypatch, stop: int) -> None:
    """Make training stop (like a crash) when it reaches step ``stop``."""
    original = stn.training.batch_indices

    def batch_indices(step, *args):
        if step == stop:
            raise Interrupted(step)
        return original(step, *args)

    monkeypatch.setattr(stn.training, "batch_indices", batch_indices)


def truncate(path, size=1000):
    with open(path, "r+b") as handle:
        handle.truncate(size)


def flip_a_weight_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the tensor data: torch itself would load it
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, flip_a_weight_byte])
def test_damaged_resume_state_is_recomputed(tmp_path, monkeypatch, capsys, damage):
    config = tiny_config()  # 12 steps, state saved every 4
    train(config, tmp_path / "reference.pt", progress=False)
    finished = tmp_path / "finished.pt"  # another run of the same directory, already done
    train(tiny_config(seed=1), finished, progress=False)
    kept = {p.name: p.read_bytes() for p in (finished, digest_path(finished))}

    checkpoint = tmp_path / "model.pt"
    with monkeypatch.context() as patch:
        interrupt_at(patch, 10)
        with pytest.raises(Interrupted):
            train(config, checkpoint, progress=False)
    state = state_path(checkpoint)
    assert load_torch(state)["step"] == 8 and not checkpoint.exists()
    damage(state)
    capsys.readouterr()

    train(config, checkpoint, progress=False)
    warning = capsys.readouterr().err
    assert f"warning: {state} " in warning and "Starting this run afresh" in warning
    reference = load_torch(tmp_path / "reference.pt")["model"]
    for key, value in load_torch(checkpoint)["model"].items():
        assert torch.equal(value, reference[key]), key  # the same weights as an uninterrupted run
    assert not state.exists() and not digest_path(state).exists()
    assert {p.name: p.read_bytes() for p in (finished, digest_path(finished))} == kept
