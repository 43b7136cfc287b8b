"""Backbone blocks: the polyphase conv + max-pool is the same function as the two layers; the
MNIST localisation heads (ours and the authors') have the paper's parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stn.backbones import backbone_spec
from stn.backbones.blocks import ConvBlock, conv_then_pool
from stn.networks import LocHead, build_network


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


def parameters(network: str, **backbone_args) -> int:
    return sum(p.numel() for p in build_network(network, "mnist", **backbone_args).parameters())


def test_parameter_counts_at_the_paper_widths():
    # the authors' code at its defaults (issue 22): one head is 43,786 parameters, ours 82,186
    assert parameters("CNN", loc_head="authors") == parameters("CNN") == 208_586
    assert parameters("STN-C1", loc_head="authors") == parameters("STN-SL1", loc_head="authors") == 252_372
    assert parameters("STN-C1") == parameters("STN-SL1") == 290_772


@pytest.mark.parametrize(
    "size, depth, side",  # the width of the authors' last map, from their code
    [(28, 0, 8), (28, 1, 2), (112, 0, 11), (112, 1, 10), (60, 0, 12), (60, 1, 7)],
)
def test_the_authors_head_at_each_task_and_depth(size, depth, side):
    model = build_network(f"STN-C{depth}", "mnist", input_size=size, loc_head="authors")
    head = model.feature_transformers[str(depth)].head
    assert isinstance(head, LocHead)
    linear = next(m for m in head.features.modules() if isinstance(m, nn.Linear))
    assert linear.in_features == 20 * side**2
    assert model(torch.rand(2, 1, size, size)).shape == (2, 10)


def test_our_head_stays_the_default_and_a_wrong_head_is_named():
    assert backbone_spec("mnist") == backbone_spec("mnist", loc_head="padded")
    assert backbone_spec("mnist") != backbone_spec("mnist", loc_head="authors")
    with pytest.raises(ValueError, match="unknown loc_head 'unpadded'; known: padded, authors"):
        backbone_spec("mnist", loc_head="unpadded")
    with pytest.raises(ValueError, match="5x5 conv with padding 0 does not fit a map of width 2"):
        build_network("STN-C2", "mnist", loc_head="authors")  # R's depth-2 maps are 2 px wide
