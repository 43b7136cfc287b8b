"""Goodfellow et al.'s multi-digit SVHN network."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from stn.backbones.blocks import BackboneSpec, ConvSpec, LocHeadSpec
from stn.backbones.registry import register_backbone


@register_backbone("svhn")
def svhn(
    input_size: int = 64,
    channels: Sequence[int] = (48, 64, 128, 160, 192, 192, 192, 192),
    hidden: Sequence[int] = (3072, 3072, 3072),
    dropout: float = 0.5,
    max_digits: int = 5,
) -> BackboneSpec:
    """Goodfellow et al.'s multi-digit network: 8 conv 5x5 layers, pool on alternate layers,
    dropout after all but the first, 3 linear layers, and 5 x 11 outputs (10 digits + none)."""
    blocks = tuple(
        ConvSpec(c, 5, padding=2, pool=2 if i % 2 else 0, dropout=dropout if i else 0.0)
        for i, c in enumerate(channels)
    )
    loc_conv = ConvSpec(32, 5, padding=2)
    return BackboneSpec(
        input_shape=(3, input_size, input_size),
        blocks=blocks,
        hidden=tuple(hidden),
        hidden_dropout=dropout,
        outputs=(max_digits, 11),
        padding_mode="zeros",
        loc_heads={
            "small": LocHeadSpec((), (32, 32)),
            "large": LocHeadSpec((replace(loc_conv, pool=2), loc_conv), (32, 32)),
        },
    )
