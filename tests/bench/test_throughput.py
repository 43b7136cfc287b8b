"""Steps/s of an experiment config's runs and the device-hours they project (``python -m stn bench``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from stn.bench.throughput import format_report, project, run_benchmark
from tests.bench.conftest import tiny_experiment


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


def test_plankton_config_projects_its_device_hours():
    """The paper's Plankton config, with a tiny backbone and batch so a CPU times it quickly:
    every run of the grid is listed with its steps and seeds, and the grid's hours projected."""
    experiment = yaml.safe_load((Path(__file__).parents[2] / "config" / "plankton.yaml").read_text())
    experiment["backbones"]["plankton"]["args"] = {"channels": [2] * 10, "hidden": [4]}
    experiment["train"]["batch_size"] = 2
    experiment["datasets"]["plankton"]["images"] = 500  # the random images drawn from: not 60,736
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


def test_process_clock_times_the_step_by_cpu_time_and_refuses_a_gpu():
    report = run_benchmark(
        tiny_experiment(), "cpu", ["fp32", "no_log"], networks=["CNN"], seconds=0.1, clock="process"
    )
    assert report["clock"] == "process" and all(report["runs"][0]["steps_per_s"].values())
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="CPU time only"):
            run_benchmark(tiny_experiment(), "cuda", ["fp32"], networks=["CNN"], seconds=0.1, clock="process")
