"""Classifier backbones by name: a module each (:data:`BACKBONE_MODULES`), imported only when its
name is asked for, so a run's code is its own backbone's module and the shared blocks
(:mod:`stn.backbones.blocks`); the workflow's code inputs follow that (:mod:`stn.code_inputs`)."""

from __future__ import annotations

import importlib
from typing import Any

from stn.backbones.blocks import Backbone, BackboneSpec
from stn.backbones.registry import BACKBONES

BACKBONE_MODULES = {
    "mnist": "stn.backbones.mnist",
    "svhn": "stn.backbones.svhn",
    "plankton": "stn.backbones.plankton",
}
"""The module that registers each backbone."""


def list_backbones() -> list[str]:
    """The names of the backbones: the packaged ones and any registered since."""
    return sorted({*BACKBONE_MODULES, *BACKBONES})


def backbone_spec(name: str, **kwargs: Any) -> BackboneSpec:
    """The spec of a backbone; kwargs go to its factory."""
    if name not in BACKBONES and name in BACKBONE_MODULES:
        importlib.import_module(BACKBONE_MODULES[name])  # registers itself
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")
    try:
        return BACKBONES[name](**kwargs)
    except TypeError as error:
        raise ValueError(f"invalid arguments for backbone {name!r}: {error}") from None


def build_backbone(name: str, **kwargs: Any) -> Backbone:
    """Build a backbone; kwargs go to its factory."""
    return Backbone(backbone_spec(name, **kwargs))
