"""Backbone blocks: the polyphase conv + max-pool is the same function as the two layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stn.backbones import ConvBlock, conv_then_pool
from stn.networks import build_network


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(
    "in_channels, kernel, padding, stride, size",
    [
        (1, 9, 0, 2, 112),
        (1, 9, "valid", 2, 30),
        (1, 5, "same", 2, 56),
        (3, 5, 2, 2, 33),
        (1, 7, 0, 3, 40),
        (2, 4, "same", 2, 17),
    ],
)
def test_conv_then_pool_is_pool_of_conv_with_its_gradients(in_channels, kernel, padding, stride, size):
    torch.manual_seed(0)
    conv = nn.Conv2d(in_channels, 6, kernel, padding=padding).double()
    pool = nn.MaxPool2d(stride)
    x = torch.rand(3, in_channels, size, size, dtype=torch.double, requires_grad=True)
    expected, fused = pool(conv(x)), conv_then_pool(conv, pool, x)
    assert fused.shape == expected.shape
    torch.testing.assert_close(fused, expected, rtol=0, atol=1e-12)
    upstream = torch.randn_like(expected)
    wrt = [x, conv.weight, conv.bias]
    for mine, theirs in zip(
        torch.autograd.grad(fused, wrt, upstream), torch.autograd.grad(expected, wrt, upstream), strict=True
    ):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-10)


def test_conv_then_pool_without_a_bias():
    conv, pool = nn.Conv2d(1, 4, 5, bias=False).double(), nn.MaxPool2d(2)
    x = torch.rand(2, 1, 20, 20, dtype=torch.double)
    torch.testing.assert_close(conv_then_pool(conv, pool, x), pool(conv(x)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("polyphase", [True, "all"])
@pytest.mark.parametrize("network", ["CNN", "STN-C0", "STN-DL1", "STN-SL1"])
def test_polyphase_blocks_leave_the_network_unchanged(network, polyphase):
    torch.manual_seed(1)
    model = build_network(network, "mnist", input_size=60).double()
    x = torch.rand(4, 1, 60, 60, dtype=torch.double)
    expected = model(x)
    blocks = [m for m in model.modules() if isinstance(m, ConvBlock)]
    for block in blocks:
        block.polyphase = polyphase
    assert any(block.fuses(list(block), polyphase) for block in blocks)
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-10)


def test_only_few_channel_convs_with_tiling_pools_fuse():
    def fuses(conv: nn.Conv2d, pool: nn.MaxPool2d) -> bool:
        return ConvBlock.fuses([conv, pool])

    assert fuses(nn.Conv2d(3, 8, 5), nn.MaxPool2d(2))
    assert not fuses(nn.Conv2d(8, 8, 5), nn.MaxPool2d(2))  # tensor cores take 8 channels as they are
    assert ConvBlock.poolable([nn.Conv2d(8, 8, 5), nn.MaxPool2d(2)])  # though conv_then_pool computes it
    assert not fuses(nn.Conv2d(1, 8, 5, padding=(1, 2)), nn.MaxPool2d(2))
    assert not fuses(nn.Conv2d(1, 8, 5, stride=2), nn.MaxPool2d(2))
    assert not fuses(nn.Conv2d(1, 8, 5), nn.MaxPool2d(3, 2))
    fused = [
        block.fuses(list(block))
        for name in ("mnist", "plankton")
        for block in build_network("CNN", name).modules()
        if isinstance(block, ConvBlock)
    ]
    # mnist: the one-channel first conv, not the 64-channel second; plankton: its first conv
    # has one channel but no pool, and its 3x3/2 pools overlap
    assert fused == [True, False] + [False] * 10


def test_polyphase_all_fuses_every_pair_it_computes():
    wide, overlapping = [nn.Conv2d(64, 64, 7), nn.MaxPool2d(2)], [nn.Conv2d(64, 64, 7), nn.MaxPool2d(3, 2)]
    assert ConvBlock.fuses(wide, "all") and not ConvBlock.fuses(wide, True)
    assert not ConvBlock.fuses(overlapping, "all")
    assert not ConvBlock.fuses([nn.Conv2d(1, 8, 5), nn.MaxPool2d(2)], False)
