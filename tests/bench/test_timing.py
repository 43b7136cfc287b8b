"""Timing a step: its warm-up and the clocks."""

from __future__ import annotations

import time

import torch

from stn.bench.levers import random_data, training_step
from stn.bench.timing import calls_per_second, warm_up
from stn.experiment import run_config
from stn.training import TrainingStep
from tests.bench.conftest import tiny_experiment


def test_warm_up_takes_the_partial_last_batch_first():
    config = run_config(tiny_experiment(), "R", "CNN", 0) | {"device": "cpu"}
    images, labels = random_data(config, torch.device("cpu"))
    step = training_step(config, "fp32", images[:100], labels[:100])  # batches of 16, the last of 4
    sizes, loss = [], step.loss
    step.loss = lambda index, draws: sizes.append(len(index)) or loss(index, draws)
    warm_up(step, torch.device("cpu"))
    assert sizes == [4] + [16] * (TrainingStep.GRAPH_WARMUP + 2)


def test_the_process_clock_does_not_count_waiting():
    def sleep_then_work(i: int) -> None:  # waiting costs no CPU time
        time.sleep(0.01)
        sum(range(20_000))

    cpu = torch.device("cpu")
    wall, process = (
        calls_per_second(sleep_then_work, 0.2, 0, cpu),
        calls_per_second(sleep_then_work, 0.05, 0, cpu, time.process_time),
    )
    assert process > 2 * wall  # the sleeps count on the wall clock only
