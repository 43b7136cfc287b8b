"""Spatial transformer networks: every variant of Finnveden, Jansson & Lindeberg (ICPR 2020).

The names below are imported on first use: ``import stn`` alone (the workflow's config checks,
the report's tables) loads neither the networks nor torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "NetworkSpec": "stn.variants",
    "STNetwork": "stn.networks",
    "TransformerSpec": "stn.variants",
    "build_network": "stn.networks",
    "parse_network_name": "stn.variants",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'stn' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
