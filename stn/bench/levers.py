"""The levers a bench compares, and the training step each one builds.

A *lever* sets the ``train`` speed switches of :class:`stn.training.TrainingStep`:

- ``today``: the step before the speed work: a CPU permutation of the whole training set,
  a new generator and a host-to-device copy every step, fp32;
- ``fp32``: the same step without that host work, with the training log's device-side sums
  (:class:`stn.monitor.TrainingMonitor`) as every run keeps them; ``no_log`` without them
  (``train.log_every: 0``): the log's cost;
- ``bf16``, ``channels_last``, ``polyphase``, ``graph`` and their combinations: the
  ``train`` switches ``precision``, ``channels_last`` (with ``cudnn_benchmark``),
  ``polyphase`` (``polyphase_all``: its value ``all``) and ``cuda_graph``. A lever sets every
  switch (those it does not name are off), whatever the config's ``train`` section says. A
  CPU runs ``channels_last`` and ``polyphase`` too; it skips the bf16 and graph levers
  (:data:`CUDA_ONLY`).

Steps train on random digits of the data set's size: throughput does not depend on the pixels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from stn.config import task_spec
from stn.data import get_dataset
from stn.experiment import deep_merge
from stn.training import TrainingStep, batch_indices, make_optimizer, network_from_config

SWITCHES_OFF: dict[str, Any] = {
    "precision": "fp32",
    "channels_last": False,
    "cudnn_benchmark": False,
    "cuda_graph": False,
    "polyphase": False,
}
BF16_CHANNELS_LAST = {"precision": "bf16", "channels_last": True, "cudnn_benchmark": True}
LEVERS: dict[str, dict[str, Any]] = {
    "today": {},
    "fp32": {},
    "no_log": {"log_every": 0},
    "bf16": {"precision": "bf16"},
    "channels_last": {"channels_last": True, "cudnn_benchmark": True},
    "bf16+channels_last": BF16_CHANNELS_LAST,
    "polyphase": {"polyphase": True},
    "polyphase_all": {"polyphase": "all"},
    "channels_last+polyphase": {"channels_last": True, "cudnn_benchmark": True, "polyphase": True},
    "channels_last+no_log": {"channels_last": True, "cudnn_benchmark": True, "log_every": 0},
    "bf16+channels_last+polyphase": BF16_CHANNELS_LAST | {"polyphase": True},
    "graph": {"cuda_graph": True},
    "graph+polyphase": {"cuda_graph": True, "polyphase": True},
    "bf16+graph": {"precision": "bf16", "cuda_graph": True},
    "bf16+channels_last+graph": BF16_CHANNELS_LAST | {"cuda_graph": True},
    "bf16+channels_last+graph+polyphase": BF16_CHANNELS_LAST | {"cuda_graph": True, "polyphase": True},
    "bf16+channels_last+graph+polyphase_all": BF16_CHANNELS_LAST | {"cuda_graph": True, "polyphase": "all"},
    "bf16+channels_last+graph+polyphase_all+no_log": BF16_CHANNELS_LAST
    | {"cuda_graph": True, "polyphase": "all", "log_every": 0},
}
"""Each lever's ``train`` switches; the ones it does not name are off (:data:`SWITCHES_OFF`),
whatever the config sets, so every lever is measured on the same footing."""
CPU_SWITCHES = {"log_every", "channels_last", "cudnn_benchmark", "polyphase"}
"""The switches a CPU step honours (``cudnn_benchmark`` is ignored there)."""
CUDA_ONLY = {name for name, switches in LEVERS.items() if set(switches) - CPU_SWITCHES}


class HostBoundStep(TrainingStep):
    """The step as it was before the speed work (the ``today`` lever, for reference): each
    step permutes the whole training set on the CPU, copies its slice to the device and
    creates a new generator."""

    def indices(self, step: int) -> Tensor:
        self.generator = torch.Generator(self.device)
        batch = batch_indices(step, len(self.images), self.train["batch_size"], self.seed)
        return batch.to(self.device)


def random_data(config: dict[str, Any], device: torch.device, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Random training images and labels shaped as a run's data set, as many as it has, on
    ``device`` (speed does not depend on the pixels)."""
    dataset = get_dataset(config["data"]["dataset"])
    generator = torch.Generator().manual_seed(seed)
    images, labels = dataset.random_images(dataset.train_size(config["data"]), generator)
    return images.to(device), labels.to(device)


def training_step(config: dict[str, Any], lever: str, images: Tensor, labels: Tensor) -> TrainingStep:
    """The training step of ``config`` under ``lever``, on random data."""
    config = deep_merge(config, {"train": SWITCHES_OFF | LEVERS[lever]})
    torch.manual_seed(config["seed"])
    model = network_from_config(config).to(images.device).train()
    optimizer = make_optimizer(model, config["train"])
    step_class = HostBoundStep if lever == "today" else TrainingStep
    step = step_class(
        model, optimizer, images, labels, task_spec(config), config["train"], config["seed"], 10**9
    )
    if step.monitor is not None:  # as in a run, where an interval's last step alone needs them
        step.monitor.gradients_due = False
    return step
