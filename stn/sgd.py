"""SGD with momentum and weight decay: torch.optim.SGD's CPU step, bit for bit, without its start-up.

``torch.optim.Optimizer``'s constructor calls a method that ``torch._disable_dynamo`` wraps, and
the first such call imports ``torch._dynamo``: about 2 s of every training job's start on a small
CPU, for a compiler that the CPU step never uses (a tenth of the demo's shortest runs). This
optimiser does what ``torch.optim.SGD`` does on the CPU (its single-tensor step, the same
operations in the same order) with the same ``param_groups``, ``state`` and ``state_dict``
layout, so a resume state written by either loads into the other (``tests/test_sgd.py``).
Training on CUDA keeps ``torch.optim.SGD`` (:func:`stn.training.make_optimizer`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

DEFAULTS = {"dampening": 0, "nesterov": False, "maximize": False, "foreach": None}
DEFAULTS |= {"differentiable": False, "fused": None}
"""The keys torch.optim.SGD keeps in each group beside lr, momentum and weight decay (not used here)."""


class SGD:
    """Plain SGD with (non-Nesterov, undampened) momentum and weight decay per parameter group."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, **DEFAULTS}
        self.param_groups = [{**self.defaults, **group, "params": list(group["params"])} for group in groups]
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                if set_to_none:
                    param.grad = None
                elif param.grad is not None:
                    param.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if decay:
                    grad = grad.add(param, alpha=decay)
                if momentum:
                    state = self.state[param]
                    buffer = state.get("momentum_buffer")
                    if buffer is None:
                        buffer = state["momentum_buffer"] = torch.clone(grad).detach()
                    else:
                        buffer.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
                    grad = buffer
                param.add_(grad, alpha=-lr)

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's layout: parameters by their index over the groups."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {key: value for key, value in group.items() if key != "params"}
            packed["params"] = [index.setdefault(id(param), len(index)) for param in group["params"]]
            groups.append(packed)
        state = {index[id(param)]: dict(values) for param, values in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict["param_groups"]
        sizes, expected = [len(g["params"]) for g in saved], [len(g["params"]) for g in self.param_groups]
        if sizes != expected:
            raise ValueError(
                f"the state's parameter groups have {sizes} parameters, this optimizer's {expected}"
            )
        params = {
            index: param
            for saved_group, group in zip(saved, self.param_groups, strict=True)
            for index, param in zip(saved_group["params"], group["params"], strict=True)
        }
        self.state = defaultdict(dict)
        for index, values in state_dict["state"].items():
            param = params[int(index)]
            self.state[param] = {
                key: value.to(param.device, param.dtype) if torch.is_tensor(value) else value
                for key, value in values.items()
            }
        for saved_group, group in zip(saved, self.param_groups, strict=True):
            group.update({key: value for key, value in saved_group.items() if key != "params"})
