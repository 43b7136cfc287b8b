"""What every backbone is made of: the specs, the blocks, the head and the :class:`Backbone`.

A block is one stage (conv, optional max-pool, nonlinearity, optional dropout); the depth of a
spatial transformer counts the blocks before it. Each backbone of the paper is a module of
:mod:`stn.backbones` whose factory returns a :class:`BackboneSpec`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stn.geometry import PaddingMode


@dataclass(frozen=True)
class ConvSpec:
    """A conv layer: ``channels`` filters of ``kernel`` x ``kernel``.

    pool: max-pool window after the conv (0: none); ``pool_stride`` defaults to the
    window. pool_above: pool only when the map is wider than this (None: always).
    """

    channels: int
    kernel: int
    padding: int | str = 0
    pool: int = 0
    pool_stride: int | None = None
    pool_above: int | None = None
    dropout: float = 0.0


@dataclass(frozen=True)
class LocHeadSpec:
    """A localisation head: convs (ReLU after each), hidden linear layers, then 6 outputs.

    downsample: average-pool factor applied first when the head reads an input image wider
    than ``downsample_above`` pixels.
    """

    convs: tuple[ConvSpec, ...] = ()
    hidden: tuple[int, ...] = (32,)
    downsample: int = 1
    downsample_above: int = 0


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to build a classifier and its localisation heads."""

    input_shape: tuple[int, int, int]
    blocks: tuple[ConvSpec, ...]
    hidden: tuple[int, ...]
    outputs: tuple[int, ...]
    activation: str = "relu"
    hidden_dropout: float = 0.0
    padding_mode: PaddingMode = "border"
    loc_heads: dict[str, LocHeadSpec] = field(default_factory=dict)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(1 / 3),
}


def _polyphase_weight(weight: Tensor, stride: int) -> Tensor:
    """The kernel of :func:`conv_then_pool` on the space-to-depth input: for each pooling phase
    the conv kernel shifted by that phase's offset and cut into stride x stride sub-pixel
    channels. (C_out, C, K, K) -> (stride^2 C_out, stride^2 C, Q, Q), Q = ceil((K + stride - 1) /
    stride), phase-major. Two operations (a pad and a copy), however many phases."""
    c_out, c_in, k, _ = weight.shape
    s, q = stride, -(-(k + stride - 1) // stride)
    n = s * q
    # every phase's shifted kernel is an n x n window of one padded kernel: the window at
    # offset (i, j) holds the kernel shifted by (s - 1 - i, s - 1 - j); the max over phases
    # does not care which phase comes first
    padded = F.pad(weight, (s - 1, n - k, s - 1, n - k))
    windows = padded.unfold(2, n, 1).unfold(3, n, 1)  # (C_out, C, i, j, n, n)
    # taps t = s * q + r: sub-pixel r becomes a channel, ordered as pixel_unshuffle's
    cut = windows.reshape(c_out, c_in, s, s, q, s, q, s).permute(2, 3, 0, 1, 5, 7, 4, 6)
    return cut.reshape(s * s * c_out, c_in * s * s, q, q)


def conv_then_pool(conv: nn.Conv2d, pool: nn.MaxPool2d, x: Tensor) -> Tensor:
    """``pool(conv(x))`` for a stride-1 conv and a max-pool whose window equals its stride s,
    computed as one convolution of the space-to-depth input (s^2 C channels) with s^2 C_out
    filters, one per pooling phase, and a max over the phases: the same numbers, but a conv
    of few input channels (MNIST's first layer has one) becomes one that tensor cores run
    well, and the full-resolution map is never pooled by a separate kernel, nor has the bias
    added to it. Ties go to one of the tied positions, as in a max-pool."""
    s, k = pool.stride, conv.kernel_size[0]
    if conv.padding == "same":  # as torch pads it: the odd pixel after
        x = F.pad(x, ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2))
    elif conv.padding != "valid" and conv.padding[0]:
        x = F.pad(x, (conv.padding[0],) * 4)
    height, width = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    rows, cols = height // s, width // s
    q = -(-(k + s - 1) // s)
    # the input rows and columns the pooled outputs read, zero-padded to whole s x s cells
    x = x[..., : s * (rows + q - 1), : s * (cols + q - 1)]
    x = F.pad(x, (0, s * (cols + q - 1) - x.shape[-1], 0, s * (rows + q - 1) - x.shape[-2]))
    if x.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    phases = F.conv2d(F.pixel_unshuffle(x, s), _polyphase_weight(conv.weight, s))
    pooled = phases.unflatten(1, (s * s, conv.out_channels)).max(dim=1).values
    if conv.bias is None:
        return pooled
    # a channel's bias is the same in every phase: added after the max, to an s^2 times smaller
    # map, it gives the same numbers (rounding is monotonic), where the conv would add it to all
    return pooled + conv.bias.to(pooled.dtype)[:, None, None]


Polyphase = bool | Literal["all"]
"""Which conv + max-pool pairs run as :func:`conv_then_pool`: none (False), those whose conv has
fewer than 8 input channels (True), or every pair it computes ("all")."""


class ConvBlock(nn.Sequential):
    """A stage (conv, optional max-pool, nonlinearity, optional dropout). With ``polyphase``
    set, the conv and the max-pool after it run as :func:`conv_then_pool` where
    :meth:`fuses` says so (the same function; the parameters are the conv's own)."""

    polyphase: Polyphase = False

    def forward(self, x: Tensor) -> Tensor:
        layers = list(self)
        if self.fuses(layers, self.polyphase):
            x, layers = conv_then_pool(layers[0], layers[1], x), layers[2:]
        for layer in layers:
            x = layer(x)
        return x

    @staticmethod
    def fuses(layers: list[nn.Module], polyphase: Polyphase = True) -> bool:
        """Whether ``polyphase`` runs the first two layers as :func:`conv_then_pool`: a pair it
        computes (:meth:`poolable`), and with ``True`` only one whose conv has fewer than 8 input
        channels, which cuDNN runs off the tensor cores (``python -m stn bench --blocks`` times
        every pair both ways)."""
        if not polyphase or not ConvBlock.poolable(layers):
            return False
        return polyphase == "all" or layers[0].in_channels < 8

    @staticmethod
    def poolable(layers: list[nn.Module]) -> bool:
        """Whether the first two layers are a conv and a max-pool that :func:`conv_then_pool` computes."""
        if len(layers) < 2 or not isinstance(layers[0], nn.Conv2d) or not isinstance(layers[1], nn.MaxPool2d):
            return False
        conv, pool = layers[:2]
        return (
            conv.stride == (1, 1)
            and conv.dilation == (1, 1)
            and conv.groups == 1
            and conv.padding_mode == "zeros"
            and conv.kernel_size[0] == conv.kernel_size[1]
            and (isinstance(conv.padding, str) or conv.padding[0] == conv.padding[1])
            and isinstance(pool.kernel_size, int)
            and pool.kernel_size == pool.stride
            and pool.padding == 0
            and pool.dilation == 1
            and not pool.ceil_mode
        )


def conv_stage(in_channels: int, spec: ConvSpec, size: int, activation: str) -> tuple[nn.Sequential, int]:
    """A block (conv, pool, nonlinearity, dropout) and the map width it outputs."""
    if spec.padding != "same" and size + 2 * int(spec.padding) < spec.kernel:
        raise ValueError(
            f"a {spec.kernel}x{spec.kernel} conv with padding {spec.padding} "
            f"does not fit a map of width {size}"
        )
    conv = nn.Conv2d(in_channels, spec.channels, spec.kernel, padding=spec.padding)
    layers: list[nn.Module] = [conv]
    size = size if spec.padding == "same" else size + 2 * int(spec.padding) - spec.kernel + 1
    if spec.pool and (spec.pool_above is None or size > spec.pool_above):
        stride = spec.pool_stride or spec.pool
        layers.append(nn.MaxPool2d(spec.pool, stride))
        size = (size - spec.pool) // stride + 1
    layers.append(ACTIVATIONS[activation]())
    if spec.dropout:
        layers.append(nn.Dropout(spec.dropout))
    return ConvBlock(*layers), size


def mlp(in_features: int, hidden: Sequence[int], dropout: float, activation: str) -> nn.Sequential:
    """Flatten, then linear layers with a nonlinearity (and dropout) after each."""
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), ACTIVATIONS[activation]()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_features = width
    return nn.Sequential(*layers)


class ClassifierHead(nn.Module):
    """Hidden linear layers, then logits of shape (B, *outputs)."""

    def __init__(self, in_features: int, spec: BackboneSpec) -> None:
        super().__init__()
        self.outputs = spec.outputs
        self.body = mlp(in_features, spec.hidden, spec.hidden_dropout, spec.activation)
        width = spec.hidden[-1] if spec.hidden else in_features
        self.logits = nn.Linear(width, math.prod(spec.outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.body(x)).view(x.shape[0], *self.outputs)


def _first(value: int | tuple[int, ...] | str) -> int | str:
    return value[0] if isinstance(value, tuple) else value


def sampling_lattice(block: nn.Module, offset: float = 0.0, stride: float = 1.0) -> tuple[float, float]:
    """Where the pixels of ``block``'s output lie on the image's pixel grid, given that its
    input's pixel j lies at image pixel ``offset + stride * j`` (the defaults: the block
    reads the image). Returns the same pair for the output."""
    for module in block.modules():
        if isinstance(module, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
            kernel, step, pad = (_first(v) for v in (module.kernel_size, module.stride, module.padding))
            if pad == "same":  # torch pads (kernel - 1) // 2 before
                pad = (kernel - 1) // 2
            offset += stride * ((kernel - 1) / 2 - pad)
            stride *= step
    return offset, stride


class Backbone(nn.Module):
    """A classifier: ``blocks`` then ``head``; ``feature_shapes[d]`` is the map at depth d and
    ``feature_frames[d]`` (scale, offset) places its normalised coordinates in the input's:
    ``input = scale * map + offset`` (a valid convolution sees less than the whole input)."""

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        self.spec = spec
        channels, size, _ = spec.input_shape
        self.feature_shapes = [(channels, size, size)]
        self.feature_frames = [(1.0, 0.0)]
        blocks = []
        offset, stride, image = 0.0, 1.0, size
        for block_spec in spec.blocks:
            block, size = conv_stage(channels, block_spec, size, spec.activation)
            channels = block_spec.channels
            blocks.append(block)
            self.feature_shapes.append((channels, size, size))
            offset, stride = sampling_lattice(block, offset, stride)
            # pixel i at input pixel offset + stride * i, in normalised coordinates
            self.feature_frames.append(
                (stride * size / image, (2 * offset + stride * (size - 1) + 1) / image - 1)
            )
        self.blocks = nn.ModuleList(blocks)
        self.head = ClassifierHead(channels * size * size, spec)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)
