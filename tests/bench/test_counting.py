"""Counting what a step does: device operations."""

from __future__ import annotations

import torch

from stn.bench.counting import device_operations


def test_device_operations_count_what_runs_and_not_views():
    x = torch.ones(4, 3)
    assert device_operations(lambda: (x + 1).view(-1).unsqueeze(0) * 2) == 2
    assert device_operations(lambda: x.t().reshape(2, 6)) == 1  # the copy a reshape of a transpose makes
