"""What a step does, counted rather than timed: its network's FLOPs and its device operations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from stn.config import task_spec
from stn.training import TrainingStep


def step_flops(step: TrainingStep) -> int:
    """FLOPs of one forward and backward pass of ``step``'s network (convolutions and products)."""
    index = step.indices(0)
    draws = step.task.draw(len(index), step.generator, step.device)
    with FlopCounterMode(display=False) as counter:
        step.loss(index, draws).backward()
    step.optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops()


class _OperationCounter(TorchDispatchMode):
    ALIASES = (torch.ops.aten._unsafe_view.default,)  # a view of a fresh result, not marked as one

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += not func.is_view and func not in self.ALIASES
        return func(*args, **(kwargs or {}))


def device_operations(call: Callable[[], object]) -> int:
    """The operations (views aside) ``call()`` dispatches: about one CUDA kernel each, so for
    small tensors what a replayed CUDA graph of it costs, countable on any device."""
    with _OperationCounter() as counter:
        call()
    return counter.count


def rendering_operations(config: dict[str, Any], images: Tensor) -> int:
    """The device operations of rendering one batch of ``config``'s task (:func:`device_operations`)."""
    task, batch, device = task_spec(config), config["train"]["batch_size"], images.device
    draws = task.draw(batch, torch.Generator(device).manual_seed(0), device)
    return device_operations(lambda: task.render(images[:batch], draws))
