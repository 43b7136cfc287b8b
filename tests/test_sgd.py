"""stn.sgd.SGD: torch.optim.SGD's CPU step bit for bit, its state layout, and no torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from stn.sgd import SGD


def model_and_groups(seed: int = 0) -> tuple[torch.nn.Module, list[dict]]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    groups = [
        {"params": list(model[0].parameters()), "lr": 0.1},
        {"params": list(model[2].parameters()), "lr": 0.03},
    ]
    return model, groups


def train(optimizer_class, momentum: float, decay: float, steps: int = 6, state=None):
    model, groups = model_and_groups()
    optimizer = optimizer_class(groups, lr=0.1, momentum=momentum, weight_decay=decay)
    if state is not None:
        optimizer.load_state_dict(state)
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        for group, base in zip(optimizer.param_groups, (0.1, 0.03), strict=True):
            group["lr"] = base * (1 - step / 10)  # a schedule, as training sets it
        x = torch.randn(8, 6, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        optimizer.step()
    return model, optimizer


@pytest.mark.parametrize(("momentum", "decay"), [(0.0, 0.0), (0.9, 0.0), (0.9, 5e-4), (0.0, 1e-3)])
def test_steps_equal_torch_sgd_to_the_bit(momentum, decay):
    ours, theirs = train(SGD, momentum, decay)[0], train(torch.optim.SGD, momentum, decay)[0]
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_state_dicts_load_into_either_optimizer():
    _, ours = train(SGD, 0.9, 5e-4, steps=3)
    _, theirs = train(torch.optim.SGD, 0.9, 5e-4, steps=3)
    mine, torchs = ours.state_dict(), theirs.state_dict()
    assert mine["param_groups"] == torchs["param_groups"]
    assert mine["state"].keys() == torchs["state"].keys()
    for index, values in mine["state"].items():
        assert torch.equal(values["momentum_buffer"], torchs["state"][index]["momentum_buffer"])
    # resumed from the other's state, both go on to the same weights
    resumed_ours = train(SGD, 0.9, 5e-4, steps=2, state=torchs)[0]
    resumed_theirs = train(torch.optim.SGD, 0.9, 5e-4, steps=2, state=mine)[0]
    for a, b in zip(resumed_ours.state_dict().values(), resumed_theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_state_of_other_groups_is_refused_and_zero_grad_can_keep_tensors():
    model, groups = model_and_groups()
    optimizer = SGD(groups, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"\[2, 2\] parameters, this optimizer's \[4\]"):
        SGD(list(model.parameters()), lr=0.1).load_state_dict(optimizer.state_dict())
    model(torch.ones(1, 6)).sum().backward()
    optimizer.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)


def test_training_with_it_imports_no_dynamo():
    probe = (
        "import sys, torch; from stn.sgd import SGD; p = torch.nn.Parameter(torch.ones(3)); "
        "o = SGD([p], lr=0.1, momentum=0.9); p.sum().backward(); o.step(); o.zero_grad(); "
        "o.load_state_dict(o.state_dict()); print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]
