"""The paper's MNIST CNN and its localisation heads."""

from __future__ import annotations

from collections.abc import Sequence

from stn.backbones.blocks import BackboneSpec, ConvSpec, LocHeadSpec
from stn.backbones.registry import register_backbone

MNIST_LOC_HEADS = ("padded", "authors")


def mnist_loc_head(style: str, channels: int, hidden: int) -> LocHeadSpec:
    """The MNIST localisation head: two 5x5 convs of ``channels`` (ReLU after each), a linear
    layer of ``hidden``, then 6 outputs. ``padded``: the convs keep the map's width, a max-pool 2
    follows each on maps wider than 20 px, and on the input image it first average-pools by 2.
    ``authors``: the authors' code (``CNN_middleloc``, ``CNN_mp``, ``CNN_translate``): unpadded
    convs, a max-pool 2 after each whose map is at least 20 px wide, and on the input a 2x
    average (their bilinear halving) only of images wider than 60 px (S's 112)."""
    if style == "padded":
        conv = ConvSpec(channels, 5, padding="same", pool=2, pool_above=20)
        return LocHeadSpec((conv, conv), (hidden,), downsample=2)
    if style == "authors":
        conv = ConvSpec(channels, 5, pool=2, pool_above=19)
        return LocHeadSpec((conv, conv), (hidden,), downsample=2, downsample_above=60)
    raise ValueError(f"mnist backbone: unknown loc_head {style!r}; known: {', '.join(MNIST_LOC_HEADS)}")


@register_backbone("mnist")
def mnist(
    input_size: int = 28,
    channels: Sequence[int] = (64, 64),
    kernels: Sequence[int] = (9, 7),
    loc_channels: int = 20,
    loc_hidden: int = 20,
    loc_head: str = "padded",
) -> BackboneSpec:
    """The paper's MNIST CNN: conv 9x9 (64), pool 2, ReLU; conv 7x7 (64), pool 2, ReLU; linear 10.
    ``loc_head``: the localisation head's style (:func:`mnist_loc_head`); ``-large`` doubles its widths."""
    if len(channels) != len(kernels):
        raise ValueError(f"mnist backbone: {len(channels)} channels but {len(kernels)} kernels")
    return BackboneSpec(
        input_shape=(1, input_size, input_size),
        blocks=tuple(ConvSpec(c, k, pool=2) for c, k in zip(channels, kernels, strict=True)),
        hidden=(),
        outputs=(10,),
        padding_mode="border",
        loc_heads={
            "small": mnist_loc_head(loc_head, loc_channels, loc_hidden),
            "large": mnist_loc_head(loc_head, 2 * loc_channels, 2 * loc_hidden),
        },
    )
