"""The levers: each sets every speed switch of the step it builds."""

from __future__ import annotations

import pytest

from stn.bench.levers import LEVERS, SWITCHES_OFF, random_data, training_step
from stn.config import resolve_run_config
from stn.experiment import run_config
from tests.bench.conftest import tiny_experiment


@pytest.mark.parametrize("lever", ["today", "fp32", "bf16+channels_last+graph+polyphase"])
def test_a_lever_sets_every_switch_whatever_the_config_says(lever):
    experiment = tiny_experiment()
    experiment["train"] |= {"precision": "bf16", "cuda_graph": True, "polyphase": True}
    config = resolve_run_config(run_config(experiment, "R", "CNN", 0))
    images, labels = random_data(config, "cpu")
    step = training_step(config, lever, images[:64], labels[:64])
    assert set(SWITCHES_OFF) <= set(resolve_run_config(config)["train"])  # every switch is a real one
    assert {key: step.train[key] for key in SWITCHES_OFF} == SWITCHES_OFF | LEVERS[lever]
