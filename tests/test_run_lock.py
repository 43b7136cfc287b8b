"""One trainer per run (stn.run_lock): a second trainer waits for the first, naming it, and then
finds the run finished, or resumes it where the first died."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from subprocess import Popen

import pytest
import torch
import yaml

from stn.io import load_torch
from stn.run_lock import RunLockError, hold_run, lock_path
from stn.training import state_path, train
from tests.conftest import tiny_config

HOLD = (  # holds the lock of sys.argv[1] until its stdin closes
    "import sys\nfrom stn.run_lock import hold_run\n"
    "with hold_run(sys.argv[1]):\n    print('held', flush=True)\n    sys.stdin.read()\n"
)


def start_holder(checkpoint: Path) -> Popen:
    """A process that holds the lock of ``checkpoint`` until its stdin is closed."""
    command = [sys.executable, "-c", HOLD, str(checkpoint)]
    holder = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


def test_the_lock_file_names_its_holder_and_goes_with_it(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run" / "model.pt"
    with hold_run(checkpoint) as lock:
        assert lock == lock_path(checkpoint) == tmp_path / "run" / "model.pt.lock"
        assert lock.read_text().startswith(f"pid {os.getpid()} on host {socket.gethostname()} since ")
    assert not lock.exists()
    with hold_run(checkpoint):  # free again
        pass


def test_a_second_holder_waits_naming_the_first_then_fails_after_its_timeout(tmp_path: Path, capsys) -> None:
    checkpoint = tmp_path / "model.pt"
    holder = start_holder(checkpoint)
    try:
        began = time.monotonic()
        waiting = hold_run(checkpoint, timeout_s=1.0, message_every_s=0.4, poll_s=0.05)
        with pytest.raises(RunLockError) as info, waiting:
            pytest.fail("took a held lock")
        waited = time.monotonic() - began
    finally:
        holder.communicate("")
    first = f"pid {holder.pid} on host {socket.gethostname()}"
    assert 1.0 <= waited < 5
    message = str(info.value)
    assert message.startswith(f"{lock_path(checkpoint)} is still held by {first} since ")
    assert "scancel its SLURM job), then run the same command again" in message
    messages = capsys.readouterr().err.splitlines()
    assert len(messages) == 3  # at 0, 0.4 and 0.8 s
    assert all(m.startswith(f"{lock_path(checkpoint)} is held by {first} since ") for m in messages)
    assert all("waiting for it to finish" in m for m in messages)


@pytest.mark.parametrize("end", ["finishes", "is killed"])
def test_a_waiter_takes_the_lock_once_the_holder_ends(tmp_path: Path, capsys, end: str) -> None:
    checkpoint = tmp_path / "model.pt"
    holder = start_holder(checkpoint)
    # in a second, the holder releases the lock (and removes its file) or dies holding it
    ending = threading.Timer(1.0, holder.stdin.close if end == "finishes" else holder.kill)
    ending.start()
    began = time.monotonic()
    with hold_run(checkpoint, timeout_s=30, poll_s=0.05) as lock:
        assert time.monotonic() - began >= 0.9
        assert lock.read_text().startswith(f"pid {os.getpid()} ")
    ending.join()
    assert holder.wait() == (0 if end == "finishes" else -signal.SIGKILL)
    assert f"is held by pid {holder.pid} " in capsys.readouterr().err and not lock.exists()


PAUSE_AFTER_FIRST_STATE = """
import os, runpy, sys, time
import stn.io

go, save = sys.argv.pop(1), stn.io.save_torch_verified

def save_then_wait(obj, path):
    save(obj, path)
    while str(path).endswith(".state") and not os.path.exists(go):
        time.sleep(0.01)

stn.io.save_torch_verified = save_then_wait  # before stn.training imports it
sys.argv[0] = "python -m stn"
runpy.run_module("stn", run_name="__main__")
"""
"""``python -m stn train`` that, once it has saved a resume state, waits until the file
``sys.argv[1]`` exists (so a second trainer surely finds it training)."""


def start_trainer(config: Path, checkpoint: Path, name: str, pause_until: Path | None = None) -> Popen:
    """``python -m stn train`` of ``config`` (pausing after its first state until ``pause_until``
    exists, if given), its stdout and stderr to ``<name>.out`` and ``<name>.err``."""
    python = ["-m", "stn"] if pause_until is None else ["-c", PAUSE_AFTER_FIRST_STATE, str(pause_until)]
    args = ["train", "--config", str(config), "--checkpoint", str(checkpoint), "--quiet"]
    out_path, err_path = config.with_name(f"{name}.out"), config.with_name(f"{name}.err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        return subprocess.Popen([sys.executable, *python, *args], stdout=out, stderr=err)


def files(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Each file of ``folder``: inode, modification time and content."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}


@pytest.mark.parametrize("first", ["finishes", "is killed"])
def test_two_trainers_of_one_run_train_it_once(tmp_path: Path, first: str) -> None:
    config = tiny_config(train={"batch_size": 32, "epochs": None, "iterations": 30, "checkpoint_every": 5})
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    train(config, tmp_path / "reference" / "model.pt", progress=False)
    run = tmp_path / "run"
    checkpoint = run / "model.pt"

    go = tmp_path / "go"
    trainer = start_trainer(config_path, checkpoint, "first", pause_until=go)
    deadline = time.monotonic() + 120
    while not state_path(checkpoint).exists():  # the first trains, holding the lock
        assert trainer.poll() is None and time.monotonic() < deadline, "the first trainer did not start"
        time.sleep(0.01)
    second = start_trainer(config_path, checkpoint, "second")
    while "is held by" not in (tmp_path / "second.err").read_text():
        assert second.poll() is None and time.monotonic() < deadline, (tmp_path / "second.err").read_text()
        time.sleep(0.01)
    go.touch()  # the first goes on training
    if first == "is killed":
        os.kill(trainer.pid, signal.SIGKILL)
        assert trainer.wait() == -signal.SIGKILL and not checkpoint.exists()
    else:
        assert trainer.wait(timeout=120) == 0
        after_first = files(run)  # the second polls the lock every second: it has not taken it yet
    assert second.wait(timeout=120) == 0, (tmp_path / "second.err").read_text()

    waited = (tmp_path / "second.err").read_text()
    assert f"{lock_path(checkpoint)} is held by pid {trainer.pid} on host {socket.gethostname()} " in waited
    assert "waiting for it to finish" in waited
    reference = load_torch(tmp_path / "reference" / "model.pt")["model"]
    trained = load_torch(checkpoint)["model"]
    assert all(torch.equal(value, trained[key]) for key, value in reference.items())
    names = {p.name for p in run.iterdir()}  # no resume state, lock or temporary file left
    assert {"model.pt", "model.pt.sha256"} <= names and not [n for n in names if "state" in n or n[0] == "."]
    assert not lock_path(checkpoint).exists()
    stats = json.loads((tmp_path / "second.out").read_text())
    assert stats == load_torch(checkpoint)["train_stats"] and stats["steps"] == 30
    if first == "finishes":  # the second found the run finished: it wrote nothing
        assert files(run) == after_first
        assert stats == json.loads((tmp_path / "first.out").read_text())


def test_a_file_system_without_flock_is_named_with_the_fix(tmp_path: Path, monkeypatch) -> None:
    def no_flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_flock)
    refused = pytest.raises(RunLockError, match="the file system does not support flock")
    with refused as info, hold_run(tmp_path / "model.pt"):
        pytest.fail("trained without a lock")
    assert str(info.value).startswith(f"cannot lock {tmp_path / 'model.pt.lock'}: ")
    assert "Lustre mounted with -o flock" in str(info.value)
