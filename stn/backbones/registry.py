"""The backbones by name: each module of :mod:`stn.backbones` registers its factory here (a leaf)."""

from __future__ import annotations

from collections.abc import Callable

from stn.backbones.blocks import BackboneSpec

BACKBONES: dict[str, Callable[..., BackboneSpec]] = {}


def register_backbone(
    name: str,
) -> Callable[[Callable[..., BackboneSpec]], Callable[..., BackboneSpec]]:
    """Register a function returning a BackboneSpec under ``name``."""

    def decorator(factory: Callable[..., BackboneSpec]) -> Callable[..., BackboneSpec]:
        BACKBONES[name] = factory
        return factory

    return decorator
