"""Spatial transformer networks: every variant of Finnveden, Jansson & Lindeberg (ICPR 2020)."""

from stn.networks import STNetwork, build_network
from stn.variants import NetworkSpec, TransformerSpec, parse_network_name

__all__ = ["NetworkSpec", "STNetwork", "TransformerSpec", "build_network", "parse_network_name"]
