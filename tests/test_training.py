import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from stn.cli import main
from stn.config import ConfigError, resolve_run_config
from stn.evaluation import evaluate, prepare_test_set
from stn.io import DamagedFileError, digest_path, load_torch, sha256sum
from stn.training import load_checkpoint, lr_factor, state_path, train
from tests.conftest import tiny_config


def weights(path):
    return load_torch(path)["model"]


def test_same_seed_same_weights_and_metrics(tmp_path):
    config = tiny_config()
    prepare_test_set(config, tmp_path / "test.pt")
    train(config, tmp_path / "a.pt", progress=False)
    train(config, tmp_path / "b.pt", progress=False)
    for key, value in weights(tmp_path / "a.pt").items():
        assert torch.equal(value, weights(tmp_path / "b.pt")[key]), key
    first = evaluate(tmp_path / "a.pt", tmp_path / "test.pt", tmp_path / "a.json", device="cpu")
    second = evaluate(tmp_path / "b.pt", tmp_path / "test.pt", device="cpu")
    assert first["test_error"] == second["test_error"]
    saved = json.loads((tmp_path / "a.json").read_text())
    assert saved["test_error"] == first["test_error"] and saved["seed"] == 0
    assert saved["config"]["model"]["network"] == "STN-SL1" and saved["train_images_per_second"] > 0
    assert isinstance(saved["rotation_undone"], float)  # a rotated task measures how much is undone
    assert not state_path(tmp_path / "a.pt").exists()


def test_different_seed_different_weights(tmp_path):
    train(tiny_config(), tmp_path / "a.pt", progress=False)
    train(tiny_config(seed=1), tmp_path / "b.pt", progress=False)
    assert not torch.equal(
        weights(tmp_path / "a.pt")["blocks.0.0.weight"],
        weights(tmp_path / "b.pt")["blocks.0.0.weight"],
    )


def test_killed_training_resumes_to_the_same_result(tmp_path):
    config = tiny_config(train={"batch_size": 32, "epochs": None, "iterations": 60, "checkpoint_every": 5})
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    train(config, tmp_path / "reference.pt", progress=False)

    checkpoint = tmp_path / "killed.pt"
    command = [
        sys.executable,
        "-m",
        "stn",
        "train",
        "--config",
        str(config_path),
        "--checkpoint",
        str(checkpoint),
        "--quiet",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not state_path(checkpoint).exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not checkpoint.exists()
    interrupted_at = load_torch(state_path(checkpoint))["step"]
    assert 0 < interrupted_at < 60

    subprocess.run(command, check=True, capture_output=True)
    resumed, reference = weights(checkpoint), weights(tmp_path / "reference.pt")
    for key, value in reference.items():
        assert torch.equal(value, resumed[key]), key
    assert not state_path(checkpoint).exists()


def test_checkpoints_load_with_weights_only(tmp_path):
    train(tiny_config(), tmp_path / "model.pt", progress=False)
    content = torch.load(tmp_path / "model.pt", weights_only=True)
    assert {"model", "config", "train_stats"} <= set(content)


def test_resume_refuses_a_state_of_another_config(tmp_path):
    config = tiny_config()
    checkpoint = tmp_path / "m.pt"
    torch.save({"config": tiny_config(seed=5), "step": 1}, state_path(checkpoint))
    with pytest.raises(RuntimeError, match="different config"):
        train(config, checkpoint, progress=False)


def test_schedules():
    cosine = {"schedule": "cosine"}
    assert lr_factor(0, 100, cosine) == 1.0 and lr_factor(100, 100, cosine) == pytest.approx(0.0)
    step = {"schedule": "step", "milestones": [0.5, 0.75], "gamma": 0.1}
    assert [lr_factor(s, 100, step) for s in (0, 50, 80)] == pytest.approx([1.0, 0.1, 0.01])


def test_evaluate_refuses_a_test_set_of_another_task(tmp_path):
    train(tiny_config(), tmp_path / "model.pt", progress=False)
    prepare_test_set(tiny_config(task={"name": "T", "canvas": 60, "translation": 16}), tmp_path / "t.pt")
    with pytest.raises(ValueError, match="another data set or task"):
        evaluate(tmp_path / "model.pt", tmp_path / "t.pt", device="cpu")


def test_evaluate_measures_rotation_undone_only_on_rotated_tasks(tmp_path):
    config = tiny_config(task={"name": "T", "canvas": 36, "translation": 4})
    prepare_test_set(config, tmp_path / "t.pt")
    train(config, tmp_path / "model.pt", progress=False)
    assert evaluate(tmp_path / "model.pt", tmp_path / "t.pt", device="cpu")["rotation_undone"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"trian": {}}, "'trian' was unexpected"),
        ({"train": {"lr": "fast"}}, "train.lr: 'fast' is not of type 'number'"),
        ({"train": {"schedule": "linear"}}, "train.schedule"),
        ({"train": {"polyphase": "first"}}, "train.polyphase: 'first' is not one of"),
        ({"train": {"polyphase": 1}}, "train.polyphase: 1 is not one of"),
        ({"model": {"network": "STN-Q1"}}, "invalid network name 'STN-Q1'"),
        ({"model": {"network": "STN-C7"}}, "depth 7 exceeds"),
        ({"task": {"canvas": 40, "translation": 16}}, "shifted digit"),
        ({"model": {"backbone_args": {"widths": [3]}}}, "invalid arguments for backbone"),
        ({"model": {"backbone": "resnet"}}, "unknown backbone 'resnet'"),
        # each data set takes its own keys only, refused by name
        (
            {"data": {"dataset": "svhn", "source": "embedded"}},
            "data: Additional properties are not allowed ('source'",
        ),
        ({"task": {"random_crop": 24}}, "task: Additional properties are not allowed ('random_crop'"),
        (
            {"data": {"dataset": "plankton", "image_size": 4}},
            "data.image_size: 4 is less than the minimum of 8",
        ),
    ],
)
def test_invalid_configs_fail_with_the_key_named(change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_run_config(change)


def test_cli_help_and_errors(tmp_path, capsys):
    for sub in ("train", "evaluate", "prepare", "variants"):
        with pytest.raises(SystemExit) as exit_:
            main([sub, "--help"])
        assert exit_.value.code == 0 and "usage" in capsys.readouterr().out
    assert main(["train", "--set", "model.network=STN-Z9", "--checkpoint", str(tmp_path / "x.pt")]) == 2
    assert "invalid network name 'STN-Z9'" in capsys.readouterr().err
    assert main(["variants"]) == 0
    listing = capsys.readouterr().out
    assert "STN-SL0123" in listing and "STN-DL1" in listing


def test_damaged_checkpoint_names_the_file_and_how_to_retrain_it(tmp_path):
    config = tiny_config()
    checkpoint = tmp_path / "model.pt"
    prepare_test_set(config, tmp_path / "test.pt")
    train(config, checkpoint, progress=False)
    record = digest_path(checkpoint)
    recorded = record.read_text()
    assert recorded == f"{sha256sum(checkpoint)}  model.pt\n"  # the format `sha256sum -c` reads
    reference = evaluate(checkpoint, tmp_path / "test.pt", device="cpu")
    original, trained = checkpoint.read_bytes(), weights(checkpoint)

    def fails(match):
        for load in (
            lambda: load_checkpoint(checkpoint),
            lambda: evaluate(checkpoint, tmp_path / "test.pt", device="cpu"),
        ):
            with pytest.raises(DamagedFileError, match=match) as info:
                load()
            message = str(info.value)
            assert f"`rm {checkpoint}`" in message and f"--forcerun {checkpoint}" in message

    with open(checkpoint, "r+b") as handle:
        handle.truncate(1000)
    fails(re.escape(f"{checkpoint} is damaged: its SHA-256 is {sha256sum(checkpoint)}, but {record} records"))
    record.unlink()  # without the record (checkpoints of older versions) loading fails just as clearly
    fails(re.escape(f"{checkpoint} cannot be read"))
    checkpoint.unlink()
    fails(re.escape(f"{checkpoint} is missing"))
    flipped = bytearray(original)
    flipped[-30] ^= 1  # in the zip's trailer: damage that loading alone may not notice
    checkpoint.write_bytes(bytes(flipped))
    record.write_text(recorded)
    fails("is damaged")

    # the remedy: deleting it and training again gives back the same weights and metrics
    checkpoint.unlink()
    train(config, checkpoint, progress=False)
    for key, value in weights(checkpoint).items():
        assert torch.equal(value, trained[key]), key
    assert evaluate(checkpoint, tmp_path / "test.pt", device="cpu")["test_error"] == reference["test_error"]
