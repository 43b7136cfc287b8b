"""stn.io: files get the mode a plain open() gives under the umask; a write that runs out of space
(a file-size limit here, as a full disk or a quota) leaves the previous file as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stn.io import (
    DamagedFileError,
    atomic_write,
    create_temp_file,
    digest_path,
    load_torch_verified,
    save_json,
    save_torch_verified,
)
from tests.file_modes import UMASKS, modes, open_modes, umask


@pytest.mark.parametrize("mask", UMASKS)
def test_written_files_get_the_mode_open_gives_under_the_umask(tmp_path: Path, mask: int) -> None:
    with umask(mask):
        (tmp_path / "plain.txt").write_text("by open()")
        save_json({"a": 1}, tmp_path / "metrics.json")
        save_torch_verified({"w": torch.ones(3)}, tmp_path / "model.pt")
        save_torch_verified({"w": torch.zeros(3)}, tmp_path / "model.pt")  # replacing one
        atomic_write(tmp_path / "table.md", lambda tmp: tmp.write_text("| a |\n"))
        temp = create_temp_file(tmp_path, ".x.", ".part")
    written = [tmp_path / name for name in ("metrics.json", "model.pt", "model.pt.sha256", "table.md")]
    written += [temp, tmp_path / "plain.txt"]
    assert modes(written) == open_modes(written, mask)
    assert sorted(tmp_path.iterdir()) == sorted(written)  # no temporary file left


def run_with_file_size_limit(code: str, limit: int) -> subprocess.CompletedProcess:
    """Run ``code`` in a Python that cannot write beyond ``limit`` bytes into a file (writes fail
    part-way with EFBIG, as on a full disk), SIGXFSZ ignored."""
    prologue = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, hard))\n"
    )
    command = [sys.executable, "-c", prologue + code]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


LIMIT = 100_000
BIG = "{'step': 8, 'weights': torch.arange(200_000, dtype=torch.float32)}"  # about 800 kB


@pytest.mark.parametrize("previous", [True, False], ids=["over-a-state", "a-new-model"])
def test_a_full_disk_leaves_the_previous_file_and_names_path_bytes_and_fix(tmp_path: Path, previous) -> None:
    path = tmp_path / ("model.pt.state" if previous else "model.pt")
    old = {"step": 4, "weights": torch.ones(10)}
    if previous:
        save_torch_verified(old, path)
    recorded = digest_path(path).read_text() if previous else None
    reference = tmp_path / "unlimited" / "same.pt"  # the same content, written without a limit
    save_torch_verified(eval(BIG, {"torch": torch}), reference)

    code = f"import torch\nfrom stn.io import save_torch_verified as save\nsave({BIG}, {str(path)!r})\n"
    result = run_with_file_size_limit(code, LIMIT)

    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"stn.io.DiskFullError: [Errno 27] {path} could not be written: File too large")
    assert f"(it needs {reference.stat().st_size} bytes, " in message  # the whole file, exactly
    assert f"Free space on the file system of {tmp_path}" in message
    assert "then run the same command again" in message
    if previous:  # the previous state is whole and verifies
        loaded = load_torch_verified(path)
        assert loaded["step"] == 4 and torch.equal(loaded["weights"], old["weights"])
        assert digest_path(path).read_text() == recorded
    else:  # no model.pt that passes its checksum
        with pytest.raises(DamagedFileError, match="is missing"):
            load_torch_verified(path)
    expected = [path.name, digest_path(path).name] if previous else []
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == expected  # no temp file left

    save_torch_verified(eval(BIG, {"torch": torch}), path)  # space freed: the same write succeeds
    assert load_torch_verified(path)["step"] == 8


def test_a_full_disk_during_a_plain_write_says_how_far_it_got(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    save_json({"old": True}, path)
    code = f"from stn.io import save_json\nsave_json(list(range(100_000)), {str(path)!r})\n"
    result = run_with_file_size_limit(code, LIMIT)
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert f"{path} could not be written: File too large (it needs more than {LIMIT} bytes" in message
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
