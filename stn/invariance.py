"""Invariance checks: how a network's output changes when its input is transformed.

:func:`output_change` measures a trained network as it is. :func:`oracle_output_change`
replaces the localisation networks by an oracle that predicts the exact inverse of
the applied transformation: a network whose transformer warps the *input* then
computes what it computes on the untransformed image (up to interpolation), while
one that warps *feature maps* (STN-CX, X > 0) cannot, because a rotated image
activates other channels, not the same channels at rotated places.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from stn.geometry import (
    affine_matrix,
    compose,
    identity,
    in_frame,
    invert,
    rotation_angle,
    warp,
)
from stn.networks import SpatialTransformer, STNetwork


def transformation(kind: str, amount: float, batch: int, device: torch.device | None = None) -> Tensor:
    """Warps (B, 2, 3) of one ``kind``: ``rotation`` (degrees), ``scale`` (factor by which the
    content grows) or ``translation`` (fraction of the image width)."""
    if kind == "rotation":
        theta = affine_matrix(amount, device=device)
    elif kind == "scale":
        theta = affine_matrix(0.0, 1.0 / amount, device=device)
    elif kind == "translation":
        theta = affine_matrix(0.0, 1.0, None, 0.0, -2.0 * amount, 0.0, device=device)
    else:
        raise ValueError(f"unknown transformation {kind!r}; valid: rotation, scale, translation")
    return theta.expand(batch, 2, 3)


def relative_change(reference: Tensor, other: Tensor) -> Tensor:
    """Per-sample ``||other - reference|| / ||reference||``."""
    ref, oth = reference.flatten(1), other.flatten(1)
    return torch.linalg.vector_norm(oth - ref, dim=1) / torch.linalg.vector_norm(ref, dim=1).clamp_min(1e-12)


def _transformers_in_order(model: STNetwork) -> list[SpatialTransformer]:
    features = sorted(model.feature_transformers.items(), key=lambda item: int(item[0]))
    return [*model.input_transformers, *(module for _, module in features)]


@contextmanager
def oracle(model: STNetwork, theta: Tensor) -> Iterator[None]:
    """Within the block, the first transformer call predicts ``theta``, every later one the identity."""
    modules = _transformers_in_order(model)
    if not modules:
        raise ValueError(f"{model.spec.name} has no spatial transformer to replace by an oracle")
    calls = 0

    def predict(x: Tensor, pose: Tensor | None = None) -> Tensor:
        nonlocal calls
        calls += 1
        return theta if calls == 1 else identity(len(x), x.device)

    try:
        for module in modules:
            module.forward = predict
        yield
    finally:
        for module in modules:
            del module.forward


def transformed(images: Tensor, theta: Tensor, padding_mode: str = "border") -> Tensor:
    return warp(images, theta, padding_mode=padding_mode)


@torch.no_grad()
def output_change(model: STNetwork, images: Tensor, theta: Tensor) -> Tensor:
    """Per-sample relative change of the output when the input is warped by ``theta``."""
    model.eval()
    return relative_change(model(images), model(transformed(images, theta, model.padding_mode)))


@torch.no_grad()
def oracle_output_change(model: STNetwork, images: Tensor, theta: Tensor) -> Tensor:
    """Like :func:`output_change`, with localisation replaced by the oracle inverse of ``theta``."""
    model.eval()
    with oracle(model, identity(len(images), images.device)):
        reference = model(images)
    with oracle(model, invert(theta)):
        return relative_change(reference, model(transformed(images, theta, model.padding_mode)))


@dataclass
class Realignment:
    """Feature maps at one depth of original images and of transformed images aligned back.

    ``original``: maps of the untransformed images; ``features``: maps of the transformed
    images, warped back by the exact inverse transformation (the best an STN-CX can
    do); ``input``: maps of the transformed images warped back *before* the blocks (what
    an input transformer does). ``*_error``: per-channel relative error against ``original``,
    averaged over images (channels that never respond are NaN)."""

    original: Tensor
    features: Tensor
    input: Tensor
    features_error: Tensor
    input_error: Tensor


def _channel_error(original: Tensor, other: Tensor) -> Tensor:
    norm = original.flatten(2).norm(dim=2)
    error = (other - original).flatten(2).norm(dim=2) / norm.clamp_min(1e-12)
    return error.where(norm > 1e-6, torch.nan).nanmean(dim=0)


@torch.no_grad()
def realign_feature_maps(model: STNetwork, images: Tensor, theta: Tensor, depth: int = 1) -> Realignment:
    """Transform ``images`` by ``theta`` and align the depth-``depth`` maps of the classifier's
    blocks back by the exact inverse, in the maps' own coordinates: the paper's proof,
    measured. For rotations by multiples of 90 degrees the warps are exact on the pixel grid,
    so the input alignment returns the original maps and any error of the feature alignment
    comes from channels that respond differently to the transformed pattern."""
    blocks = torch.nn.Sequential(*model.eval().blocks[:depth])
    moved = transformed(images, theta, model.padding_mode)
    undo = invert(theta)
    original = blocks(images)
    back = in_frame(undo, model.feature_frames[depth])
    features = warp(blocks(moved), back, padding_mode=model.padding_mode)
    inputs = blocks(transformed(moved, undo, model.padding_mode))
    return Realignment(
        original, features, inputs, _channel_error(original, features), _channel_error(original, inputs)
    )


def _angle_batches(
    model: STNetwork, images: Tensor, poses: Tensor | None, batch_size: int
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Batches of ``images`` (uint8 or float in [0, 1], on any device) as float on the model's
    device, with their ``poses``; the model in eval mode, checked to have a transformer."""
    if not model.spec.transformers:
        raise ValueError(f"{model.spec.name} has no spatial transformer whose angle could be read")
    model.eval()
    device = next(model.parameters()).device
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        batch = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch
        yield batch, None if poses is None else poses[start : start + batch_size].to(device)


def first_warp(thetas: dict[str, Tensor]) -> Tensor:
    """The warp a network applies first: the composed input warp, else the first feature warp."""
    return thetas.get("input", next(iter(thetas.values())))


@torch.no_grad()
def predicted_angles(
    model: STNetwork, images: Tensor, poses: Tensor | None = None, batch_size: int = 512
) -> Tensor:
    """The rotation (degrees, ``-atan2(a01 - a10, a00 + a11)``) of the first warp the network
    applies to each image (float in [0, 1] or uint8, on any device: batches move to the
    model's); ``poses`` are passed on to oracle transformers."""
    batches = _angle_batches(model, images, poses, batch_size)
    return torch.cat(
        [rotation_angle(first_warp(model.run(batch, pose).thetas)).cpu() for batch, pose in batches]
    )


ROTATION_PROBE_ANGLES = (-45.0, -22.5, 0.0, 22.5, 45.0)


@torch.no_grad()
def rotation_undone(
    model: STNetwork,
    images: Tensor,
    angles: tuple[float, ...] = ROTATION_PROBE_ANGLES,
    poses: Tensor | None = None,
) -> float | None:
    """The share of an applied rotation that the network's first transformer undoes.

    Every image is rotated by each of ``angles``; within an image, the rotation of the
    predicted warp (the composed input warp, else the first feature warp) is regressed
    on the applied angle. 1: every rotated copy is brought to one pose; 0: the
    rotation is ignored. None for a network without transformers. ``poses`` (the
    images' own poses) are needed by oracle transformers: a rotated copy's pose is
    its rotation undone, then the image's pose.
    """
    if not model.spec.transformers:
        return None
    model.eval()
    predicted = []
    for angle in angles:
        theta = transformation("rotation", angle, len(images), images.device)
        pose = None if poses is None else compose(invert(theta), poses)
        predicted.append(predicted_angles(model, transformed(images, theta, model.padding_mode), pose))
    applied = torch.tensor(angles) - sum(angles) / len(angles)
    centred = torch.stack(predicted, dim=1)
    centred = centred - centred.mean(dim=1, keepdim=True)
    return float(-(centred * applied).sum() / (applied.square().sum() * len(images)))


def full_turn(count: int) -> tuple[float, ...]:
    """``count`` angles evenly over [-180, 180): ``numpy.linspace(-180, 180, count, endpoint=False)``."""
    if count < 2:
        raise ValueError(f"a full turn needs at least 2 angles, got {count}")
    return tuple(-180.0 + 360.0 * k / count for k in range(count))


FULL_TURN_ANGLES = full_turn(17)
"""The authors' rotation analysis (Plankton): 17 angles, 360/17 ≈ 21.2° apart."""


@torch.no_grad()
def rotation_responses(
    model: STNetwork,
    images: Tensor,
    angles: tuple[float, ...] = FULL_TURN_ANGLES,
    poses: Tensor | None = None,
    batch_size: int = 512,
    padding_mode: str = "zeros",
) -> Tensor:
    """The rotation (degrees, :func:`predicted_angles`) the network applies to each image
    rotated by each of ``angles``: (N, A). A transformer that compensates every rotation
    predicts ``-angle`` plus the image's own pose. ``images`` (N, C, H, W), uint8 or float in
    [0, 1], on any device (batches move to the model's); rotated copies are filled with
    ``padding_mode`` (zeros: as the Plankton augmentation fills). ``poses`` (the images' own
    poses) are needed by oracle transformers: a rotated copy's pose is its rotation undone,
    then the image's pose."""
    rows = []
    for batch, pose in _angle_batches(model, images, poses, batch_size):
        columns = []
        for angle in angles:
            theta = transformation("rotation", angle, len(batch), batch.device)
            rotated_pose = None if pose is None else compose(invert(theta), pose)
            thetas = model.run(transformed(batch, theta, padding_mode), rotated_pose).thetas
            columns.append(rotation_angle(first_warp(thetas)).cpu())
        rows.append(torch.stack(columns, dim=1))
    return torch.cat(rows)
