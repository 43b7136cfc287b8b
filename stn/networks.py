"""One mechanism that builds every network: a backbone plus spatial transformers."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from stn.backbones import build_backbone
from stn.backbones.blocks import Backbone, LocHeadSpec, conv_stage, mlp
from stn.geometry import compose, in_frame, warp
from stn.variants import NetworkSpec, TransformerSpec, parse_network_name


class LocHead(nn.Module):
    """Convs and linear layers ending in 6 affine parameters, initialised to the identity."""

    def __init__(self, in_shape: tuple[int, int, int], spec: LocHeadSpec, reads_image: bool) -> None:
        super().__init__()
        channels, size, _ = in_shape
        layers: list[nn.Module] = []
        if reads_image and spec.downsample > 1 and size > spec.downsample_above:
            layers.append(nn.AvgPool2d(spec.downsample))
            size //= spec.downsample
        for conv in spec.convs:
            stage, size = conv_stage(channels, conv, size, "relu")
            layers.append(stage)
            channels = conv.channels
        layers.append(mlp(channels * size * size, spec.hidden, 0.0, "relu"))
        self.features = nn.Sequential(*layers)
        self.theta = nn.Linear(spec.hidden[-1] if spec.hidden else channels * size * size, 6)
        nn.init.zeros_(self.theta.weight)
        with torch.no_grad():
            self.theta.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, x: Tensor, pose: Tensor | None = None) -> Tensor:
        return self.theta(self.features(x)).view(-1, 2, 3)


class OracleHead(nn.Module):
    """No localisation network: the exact inverse of each image's transformation (its
    ``pose``, a warp of the input), expressed in the coordinates of the map it warps."""

    def __init__(self, frame: tuple[float, float], network: str) -> None:
        super().__init__()
        self.network = network
        self.frame = frame

    def forward(self, x: Tensor, pose: Tensor | None = None) -> Tensor:
        if pose is None:
            raise ValueError(
                f"{self.network} needs the pose of every image (the inverse of its augmentation, "
                "the task's undo): call it with pose=..."
            )
        return in_frame(pose.to(x), self.frame)


class SpatialTransformer(nn.Module):
    """A localisation network (``body`` then a :class:`LocHead` or an :class:`OracleHead`)
    predicting an affine matrix."""

    def __init__(self, spec: TransformerSpec, body: nn.Module, head: LocHead | OracleHead) -> None:
        super().__init__()
        self.spec = spec
        self.body = body
        self.head = head

    def forward(self, x: Tensor, pose: Tensor | None = None) -> Tensor:
        return self.head(self.body(x), pose)


def reinitialised_copy(modules: list[nn.Module]) -> nn.Sequential:
    """A deep copy of ``modules`` with every parameter drawn afresh."""
    fresh = copy.deepcopy(nn.Sequential(*modules))
    for module in fresh.modules():
        if module is not fresh and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return fresh


@dataclass
class Forward:
    """What a network computed: logits, the input as aligned by input transformers,
    and every predicted matrix by transformer label (``"C1"``, ``"SL1"``, ``"SL3.2"``;
    ``"input"`` is the composed warp of the input, when there are input transformers)."""

    logits: Tensor
    aligned: Tensor
    thetas: dict[str, Tensor] = field(default_factory=dict)


class STNetwork(nn.Module):
    """A backbone's blocks and head with the spatial transformers of a :class:`NetworkSpec`."""

    def __init__(self, backbone: Backbone, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.backbone_spec = backbone.spec
        self.padding_mode = backbone.spec.padding_mode
        self.blocks = backbone.blocks
        self.head = backbone.head
        self.feature_frames = backbone.feature_frames
        self.input_transformers = nn.ModuleList()
        self.feature_transformers = nn.ModuleDict()
        for transformer in spec.transformers:
            module = self._build_transformer(backbone, transformer)
            if transformer.transforms == "input":
                self.input_transformers.append(module)
            else:
                self.feature_transformers[str(transformer.depth)] = module

    def _build_transformer(self, backbone: Backbone, spec: TransformerSpec) -> SpatialTransformer:
        name = self.spec.name
        if spec.depth > backbone.num_blocks:
            raise ValueError(
                f"{name}: depth {spec.depth} exceeds the backbone's {backbone.num_blocks} blocks "
                f"(valid depths 0-{backbone.num_blocks})"
            )
        if spec.localisation == "oracle":
            return SpatialTransformer(
                spec, nn.Identity(), OracleHead(backbone.feature_frames[spec.depth], name)
            )
        presets = backbone.spec.loc_heads
        if spec.head not in presets:
            raise ValueError(f"{name}: unknown localisation head {spec.head!r}; valid: {sorted(presets)}")
        blocks = list(backbone.blocks[: spec.depth])
        body = {
            "features": nn.Identity,
            "shared": lambda: nn.Sequential(*blocks),
            "copy": lambda: reinitialised_copy(blocks),
        }[spec.reads]()
        head = LocHead(backbone.feature_shapes[spec.depth], presets[spec.head], spec.depth == 0)
        return SpatialTransformer(spec, body, head)

    def classifier_parameters(self) -> list[nn.Parameter]:
        return [*self.blocks.parameters(), *self.head.parameters()]

    def localisation_parameters(self) -> list[nn.Parameter]:
        """Parameters that belong to localisation networks only (shared blocks excluded)."""
        shared = {id(p) for p in self.classifier_parameters()}
        return [p for p in self.parameters() if id(p) not in shared]

    @property
    def needs_pose(self) -> bool:
        """Whether the network needs each image's pose (it has an oracle transformer)."""
        return any(t.localisation == "oracle" for t in self.spec.transformers)

    def run(self, x: Tensor, pose: Tensor | None = None) -> Forward:
        """The forward pass with everything the transformers did. ``pose`` (B, 2, 3): the warp of
        the input that undoes each image's transformation, read by oracle transformers only."""
        thetas: dict[str, Tensor] = {}
        aligned, total = x, None
        for module in self.input_transformers:
            spec: TransformerSpec = module.spec
            kind = "SL" if spec.reads == "shared" else "DL" if spec.reads == "copy" else "C"
            for iteration in range(spec.iterations):
                theta = module(aligned, pose)
                label = f"{kind}{spec.depth}" + (f".{iteration + 1}" if spec.iterations > 1 else "")
                thetas[label] = theta
                total = theta if total is None else compose(total, theta)
                source, step = (x, total) if spec.composes else (aligned, theta)
                aligned = warp(source, step, padding_mode=self.padding_mode)
        if total is not None:
            thetas["input"] = total
        h = aligned
        for depth in range(len(self.blocks) + 1):
            if str(depth) in self.feature_transformers:
                theta = self.feature_transformers[str(depth)](h, pose)
                thetas[f"C{depth}"] = theta
                h = warp(h, theta, padding_mode=self.padding_mode)
            if depth < len(self.blocks):
                h = self.blocks[depth](h)
        return Forward(self.head(h), aligned, thetas)

    def forward(self, x: Tensor, pose: Tensor | None = None) -> Tensor:
        return self.run(x, pose).logits


def build_network(network: str | NetworkSpec, backbone: str = "mnist", **backbone_args: Any) -> STNetwork:
    """Build a network from its name (see :mod:`stn.variants`) or spec on a registered backbone."""
    spec = parse_network_name(network) if isinstance(network, str) else network
    return STNetwork(build_backbone(backbone, **backbone_args), spec)
