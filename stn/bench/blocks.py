"""Block timings: ``python -m stn bench --blocks``.

Times each conv + max-pool pair of the selected runs' networks as a conv then a pool and as one
polyphase conv (:func:`stn.backbones.blocks.conv_then_pool`), fused by the ``polyphase`` switch or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from stn.backbones.blocks import ConvBlock, conv_then_pool
from stn.bench.levers import random_data, training_step
from stn.bench.selection import machine, select_runs
from stn.bench.timing import calls_per_second
from stn.experiment import run_config


def _pair_ms(
    conv: torch.nn.Conv2d,
    pool: torch.nn.MaxPool2d,
    shape: torch.Size,
    input_grad: bool,
    polyphase: bool,
    seconds: float,
    device: torch.device,
) -> float:
    """ms per forward and backward of ``pool(conv(x))`` (or :func:`conv_then_pool`) for a random
    ``x`` of ``shape`` (with its gradient where ``input_grad``, as in the step); bf16,
    channels_last and ``cudnn.benchmark`` on CUDA."""
    cuda = device.type == "cuda"
    x = torch.randn(shape, device=device)
    x = (x.contiguous(memory_format=torch.channels_last) if cuda else x).requires_grad_(input_grad)

    def once(i: int) -> None:
        with torch.autocast("cuda", torch.bfloat16, enabled=cuda):
            out = conv_then_pool(conv, pool, x) if polyphase else pool(conv(x))
        out.backward(torch.ones_like(out))

    with torch.backends.cudnn.flags(enabled=True, benchmark=cuda):
        return 1000 / calls_per_second(once, seconds, 3, device)


def time_conv_pools(config: dict[str, Any], device: torch.device, seconds: float) -> list[dict[str, Any]]:
    """Each conv + max-pool pair of a run's network that :func:`~stn.backbones.blocks.conv_then_pool`
    computes (:meth:`~stn.backbones.blocks.ConvBlock.poolable`, whether or not ``polyphase`` fuses it),
    at the input a training step gives it: ms per forward and backward as a conv then a
    max-pool, and as ``conv_then_pool``; in bf16, channels_last and with ``cudnn.benchmark`` on
    CUDA, the fastest stock setting."""
    images, labels = random_data(config, device)
    step = training_step(config, "fp32", images, labels)
    inputs: dict[ConvBlock, tuple[torch.Size, bool]] = {}

    def remember(block: ConvBlock, args: tuple[Tensor, ...]) -> None:
        inputs.setdefault(block, (args[0].shape, args[0].requires_grad))

    hooks = [
        block.register_forward_pre_hook(remember)
        for block in step.model.modules()
        if isinstance(block, ConvBlock) and ConvBlock.poolable(list(block))
    ]
    index = step.indices(0)
    step.loss(index, step.task.draw(len(index), step.generator, device))
    for hook in hooks:
        hook.remove()
    names = {block: name for name, block in step.model.named_modules()}
    timings, seen = [], set()
    for block, (shape, input_grad) in inputs.items():
        conv, pool = list(block)[:2]
        key = (tuple(shape), input_grad, tuple(conv.weight.shape), pool.stride)
        if key in seen:
            continue
        seen.add(key)
        ms = {
            "conv then pool": _pair_ms(conv, pool, shape, input_grad, False, seconds, device),
            "conv_then_pool": _pair_ms(conv, pool, shape, input_grad, True, seconds, device),
        }
        timings.append(
            {
                "block": names[block],
                "input": list(shape),
                "input_grad": input_grad,
                "conv": list(conv.weight.shape),
                "fused_by_polyphase": ConvBlock.fuses(list(block)),
                "ms": ms,
                "speedup": ms["conv then pool"] / ms["conv_then_pool"],
            }
        )
    return timings


def run_conv_pool_timings(
    experiment: dict[str, Any],
    device: str = "auto",
    tasks: Sequence[str] | None = None,
    networks: Sequence[str] | None = None,
    seconds: float = 2.0,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """:func:`time_conv_pools` for each selected run of an experiment."""
    dev, _, pairs = select_runs(experiment, device, [], tasks, networks, log)
    blocks = []
    for task, network in pairs:
        log(f"timing the conv + max-pool pairs of {task} {network}")
        config = run_config(experiment, task, network, experiment["seeds"][0]) | {"device": dev.type}
        blocks += [
            {"task": task, "network": network, **entry} for entry in time_conv_pools(config, dev, seconds)
        ]
    return {**machine(dev), "blocks": blocks}


def format_conv_pool_timings(report: dict[str, Any]) -> str:
    """One line per timed conv + max-pool pair: its shapes, both ways' ms and the ratio."""
    lines = [f"device {report['device']}, torch {report['torch']}; ms per forward and backward:"]
    for entry in report["blocks"]:
        c_out, c_in, k, _ = entry["conv"]
        ms, fused = entry["ms"], "fused" if entry["fused_by_polyphase"] else "not fused"
        lines.append(
            f"{entry['task']} {entry['network']} {entry['block']}: {c_in}->{c_out} {k}x{k} on "
            f"{tuple(entry['input'])}{' (and its gradient)' if entry['input_grad'] else ''}: conv then "
            f"pool {ms['conv then pool']:.3f}, conv_then_pool {ms['conv_then_pool']:.3f} "
            f"({entry['speedup']:.2f}x; {fused} by polyphase: true)"
        )
    return "\n".join(lines)
