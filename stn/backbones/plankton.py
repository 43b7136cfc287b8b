"""The Plankton network of the paper."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from stn.backbones.blocks import BackboneSpec, ConvSpec, LocHeadSpec
from stn.backbones.registry import register_backbone


@register_backbone("plankton")
def plankton(
    input_size: int = 95,
    channels: Sequence[int] = (32, 32, 64, 64, 128, 128, 128, 256, 256, 256),
    pool_after: Sequence[int] = (2, 4, 7, 10),
    hidden: Sequence[int] = (512, 512),
    dropout: float = 0.5,
    num_classes: int = 121,
) -> BackboneSpec:
    """The Plankton network: LeakyReLU(1/3), ten conv 3x3, max-pool 3x3/2 after layers
    2, 4, 7 and 10, two linear layers of 512 with dropout, 121 classes. The
    localisation heads are not given in the paper (our choice)."""
    blocks = tuple(
        ConvSpec(c, 3, padding=1, pool=3 if i + 1 in pool_after else 0, pool_stride=2)
        for i, c in enumerate(channels)
    )
    loc_conv = ConvSpec(32, 3, padding=1, pool=2, pool_above=12)
    return BackboneSpec(
        input_shape=(1, input_size, input_size),
        blocks=blocks,
        hidden=tuple(hidden),
        hidden_dropout=dropout,
        outputs=(num_classes,),
        activation="leaky_relu",
        padding_mode="border",
        loc_heads={
            "small": LocHeadSpec((loc_conv, loc_conv), (64,), downsample=2),
            "large": LocHeadSpec((loc_conv, loc_conv, replace(loc_conv, channels=64)), (128,), downsample=2),
        },
    )
