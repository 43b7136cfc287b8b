"""The throughput benchmark of an experiment config (``python -m stn bench``)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
import torch
import yaml

from stn.bench import (
    LEVERS,
    SWITCHES_OFF,
    _rate,
    _warm_up,
    device_operations,
    format_report,
    main,
    project,
    random_data,
    run_benchmark,
    training_step,
)
from stn.config import resolve_run_config
from stn.experiment import run_config
from stn.training import TrainingStep
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


def test_benchmark_times_every_run_of_the_config_and_projects_its_hours():
    messages = []
    report = run_benchmark(
        tiny_experiment(), "cpu", ["today", "fp32", "bf16"], seconds=0.2, pack=2, log=messages.append
    )
    assert "bf16" not in report["levers"] and any("CUDA-only" in m for m in messages)
    assert [(e["task"], e["network"]) for e in report["runs"]] == [
        ("R", "CNN"),
        ("R", "STN-C1"),
        ("R", "STN-C1-oracle"),  # the tables' networks are part of the grid
    ]
    for entry in report["runs"]:
        assert entry["steps"] == 500 and entry["seeds"] == 3 and entry["flops"] > 0
        assert all(rate > 0 for rate in entry["steps_per_s"].values())
    expected = sum(e["steps"] * e["seeds"] / e["steps_per_s"]["fp32"] for e in report["runs"]) / 3600
    hours = report["projection"]["hours"]["fp32"]
    assert hours["sequential"] == pytest.approx(expected) and hours["complete"]
    packing = report["packing"]["R"]
    assert packing["networks"] == ["CNN", "STN-C1"] and packing["speedup"] > 0
    assert hours["packed"] == pytest.approx(expected / max(packing["speedup"], 1.0))
    assert report["augmentation"]["R"]["ms_per_batch"] > 0 and report["augmentation"]["R"]["operations"] > 0
    text = format_report(report)
    assert "operations" in text and "projected device-hours" in text
    assert "STN-C1-oracle" in text and "floor" in text


@pytest.mark.parametrize("lever", ["today", "fp32", "bf16+channels_last+graph+polyphase"])
def test_a_lever_sets_every_switch_whatever_the_config_says(lever):
    experiment = tiny_experiment()
    experiment["train"] |= {"precision": "bf16", "cuda_graph": True, "polyphase": True}
    config = resolve_run_config(run_config(experiment, "R", "CNN", 0))
    images, labels = random_data(config, "cpu")
    step = training_step(config, lever, images[:64], labels[:64])
    assert set(SWITCHES_OFF) <= set(resolve_run_config(config)["train"])  # every switch is a real one
    assert {key: step.train[key] for key in SWITCHES_OFF} == SWITCHES_OFF | LEVERS[lever]


def test_projection_sums_steps_over_rates_and_skips_failed_levers():
    report = {
        "levers": {"fp32": {}, "graph": {}},
        "peak_tflops": 1.0,
        "packing": {"R": {"speedup": 2.0}},
        "runs": [
            {
                "task": "R",
                "steps": 3600,
                "seeds": 2,
                "flops": 10**12,
                "steps_per_s": {"fp32": 2.0, "graph": None},
            },
            {"task": "T", "steps": 7200, "seeds": 1, "flops": 0, "steps_per_s": {"fp32": 1.0, "graph": 4.0}},
        ],
    }
    projection = project(report)
    assert projection["hours"]["fp32"] == {"sequential": 3.0, "packed": 2.5, "complete": True}
    assert projection["hours"]["graph"]["complete"] is False
    assert projection["floor_hours"] == pytest.approx(2.0)


def test_command_line_writes_the_json_report(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_experiment()))
    out = tmp_path / "bench.json"
    argv = ["--config", str(config), "--device", "cpu", "--levers", "fp32", "--seconds", "0.1"]
    assert main([*argv, "--networks", "CNN", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [e["network"] for e in report["runs"]] == ["CNN"] and report["config"] == str(config)
    assert "written: " + str(out) in capsys.readouterr().out


def test_command_line_rejects_a_bad_config_before_measuring(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({**tiny_experiment(), "networks": ["STN-Q9"]}))
    with pytest.raises(SystemExit):
        main(["--config", str(config), "--device", "cpu"])


def test_plankton_config_projects_its_device_hours():
    """The paper's Plankton config, with a tiny backbone and batch so a CPU times it quickly:
    every run of the grid is listed with its steps and seeds, and the grid's hours projected."""
    experiment = yaml.safe_load((Path(__file__).parents[1] / "config" / "plankton.yaml").read_text())
    experiment["backbones"]["plankton"]["args"] = {"channels": [2] * 10, "hidden": [4]}
    experiment["train"]["batch_size"] = 2
    networks = ["CNN", "STN-C10", "STN-SL4x2"]
    report = run_benchmark(experiment, "cpu", ["fp32"], networks=networks, seconds=0.05)
    assert [(e["task"], e["network"]) for e in report["runs"]] == [("Plankton", n) for n in networks]
    for entry in report["runs"]:
        assert entry["steps"] == experiment["train"]["iterations"] and entry["seeds"] == 4
    expected = sum(e["steps"] * e["seeds"] / e["steps_per_s"]["fp32"] for e in report["runs"]) / 3600
    assert report["projection"]["hours"]["fp32"]["sequential"] == pytest.approx(expected)


def test_repeats_time_each_lever_on_fresh_steps_and_keep_the_fastest():
    messages: list[str] = []
    report = run_benchmark(
        tiny_experiment(),
        "cpu",
        ["today", "fp32"],
        networks=["CNN"],
        seconds=0.05,
        repeats=3,
        log=messages.append,
    )
    (entry,) = report["runs"]
    assert report["repeats"] == 3
    for lever in ("today", "fp32"):
        assert len(entry["repeats"][lever]) == 3
        assert entry["steps_per_s"][lever] == max(entry["repeats"][lever])
    # the levers take turns, so a slow spell of the machine does not fall on one lever's repeats
    timed = [m for m in messages if m.startswith("R CNN")]
    assert timed[:3] == ["R CNN: today (1 of 3)", "R CNN: fp32 (1 of 3)", "R CNN: today (2 of 3)"]


def test_warm_up_takes_the_partial_last_batch_first():
    config = run_config(tiny_experiment(), "R", "CNN", 0) | {"device": "cpu"}
    images, labels = random_data(config, torch.device("cpu"))
    step = training_step(config, "fp32", images[:100], labels[:100])  # batches of 16, the last of 4
    sizes, loss = [], step.loss
    step.loss = lambda index, draws: sizes.append(len(index)) or loss(index, draws)
    _warm_up(step, torch.device("cpu"))
    assert sizes == [4] + [16] * (TrainingStep.GRAPH_WARMUP + 2)


def test_profile_names_the_costliest_operators_and_the_augmentation_share(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_experiment()))
    out = tmp_path / "profile.json"
    argv = ["--config", str(config), "--device", "cpu", "--levers", "today", "fp32", "bf16"]
    assert main([*argv, "--networks", "STN-C1", "--profile", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [(p["task"], p["network"], p["lever"]) for p in report["profiles"]] == [
        ("R", "STN-C1", "today"),
        ("R", "STN-C1", "fp32"),  # bf16 is CUDA-only: skipped on a CPU
    ]
    for profile in report["profiles"]:
        assert profile["clock"] == "cpu" and profile["steps"] == 2 and profile["step_ms"] > 0
        assert profile["busy_ms"] > 0
        assert 0 < profile["augmentation_share"] < 1  # the labelled rendering, within the step
        shares = [op["share"] for op in profile["top"]]
        assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0 + 1e-6
        assert any("convolution" in op["name"] for op in profile["top"])
        trace = tmp_path / "traces" / f"R-STN-C1-{profile['lever']}.json"
        assert json.loads(trace.read_text())["traceEvents"]
    assert "augmentation" in capsys.readouterr().out


def test_device_operations_count_what_runs_and_not_views():
    x = torch.ones(4, 3)
    assert device_operations(lambda: (x + 1).view(-1).unsqueeze(0) * 2) == 2
    assert device_operations(lambda: x.t().reshape(2, 6)) == 1  # the copy a reshape of a transpose makes


def test_blocks_times_each_conv_and_pool_pair_both_ways(tmp_path, capsys):
    experiment = copy.deepcopy(tiny_experiment())  # its backbone is the shared TINY_BACKBONE
    experiment["backbones"]["mnist"]["args"]["channels"] = [10, 8]  # block 2 reads 10 channels
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(experiment))
    out = tmp_path / "blocks.json"
    argv = ["--config", str(config), "--device", "cpu", "--networks", "STN-C1", "--seconds", "0.05"]
    assert main([*argv, "--blocks", "--out", str(out)]) == 0
    blocks = json.loads(out.read_text())["blocks"]
    # the classifier's two blocks at their step inputs (28 px digits, then 10 px maps of 10 channels)
    classifier = {tuple(b["input"]): b for b in blocks if b["block"].startswith("blocks.")}
    assert set(classifier) == {(16, 1, 28, 28), (16, 10, 10, 10)}
    assert classifier[16, 1, 28, 28]["fused_by_polyphase"]
    assert not classifier[16, 10, 10, 10]["fused_by_polyphase"]  # but timed, to see whether it would pay
    # as in the step: the digits need no gradient, the warped depth-1 maps do (theta learns from them)
    assert not classifier[16, 1, 28, 28]["input_grad"] and classifier[16, 10, 10, 10]["input_grad"]
    for entry in blocks:
        assert entry["task"] == "R" and entry["network"] == "STN-C1"
        assert min(entry["ms"].values()) > 0
        assert entry["speedup"] == pytest.approx(
            entry["ms"]["conv then pool"] / entry["ms"]["conv_then_pool"]
        )
    assert "conv_then_pool" in capsys.readouterr().out


def test_process_clock_times_the_step_by_cpu_time_and_refuses_a_gpu(tmp_path):
    def sleep_then_work(i: int) -> None:  # waiting costs no CPU time
        time.sleep(0.01)
        sum(range(20_000))

    cpu = torch.device("cpu")
    wall, process = (
        _rate(sleep_then_work, 0.2, 0, cpu),
        _rate(sleep_then_work, 0.05, 0, cpu, time.process_time),
    )
    assert process > 2 * wall  # the sleeps count on the wall clock only
    report = run_benchmark(
        tiny_experiment(), "cpu", ["fp32", "no_log"], networks=["CNN"], seconds=0.1, clock="process"
    )
    assert report["clock"] == "process" and all(report["runs"][0]["steps_per_s"].values())
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="CPU time only"):
            run_benchmark(tiny_experiment(), "cuda", ["fp32"], networks=["CNN"], seconds=0.1, clock="process")
