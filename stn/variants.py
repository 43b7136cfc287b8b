"""Network names and the descriptions they stand for.

Grammar (one name per network)::

    CNN                                  the classifier alone
    STN-<kind><depths>[x<iterations>][-<head>]
    STN-C<depth>-oracle                  an oracle transformer at one depth

``kind``
    ``C``  the localisation network reads the classifier's feature map at depth X
           and the transformer warps that feature map (X = 0: the input image);
    ``DL`` a fresh, re-initialised copy of the classifier's first X blocks, then a
           head, predicts a warp of the *input*;
    ``SL`` the classifier's own first X blocks (shared parameters), then a head,
           predict a warp of the *input*.
``depths``
    The number of classifier blocks before the transformer. Several transformers
    are written one digit per depth in increasing order (``STN-C0123``: depths 0,
    1, 2, 3). A digit run that does not increase is one number (``STN-C10``: depth
    10). ``C`` transformers are independent (Jaderberg's multi-ST); ``DL`` and
    ``SL`` transformers compose: each reads the input as aligned so far and the
    composed matrix resamples the original input once (iterative alignment).
``x<iterations>``
    Apply each transformer this many times, composing (``STN-SL3x2``); only for
    input-transforming kinds.
``-<head>``
    The localisation head preset of the backbone (``small`` by default, ``large``).
``-oracle``
    No localisation network: the transformer applies the exact inverse of the
    transformation the augmentation applied to each image (its *pose*), at depth
    0 on the input, at depth X on the feature map after X blocks. Only the
    classifier learns: what a transformer at that depth can achieve at best.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

Reads = Literal["features", "copy", "shared"]
Transforms = Literal["features", "input"]
Localisation = Literal["learned", "oracle"]

KINDS: dict[str, tuple[Reads, Transforms, bool]] = {
    "C": ("features", "features", False),
    "DL": ("copy", "input", True),
    "SL": ("shared", "input", True),
}
DEFAULT_HEAD = "small"
ORACLE = "oracle"
_NAME = re.compile(r"STN-(?P<kind>C|DL|SL)(?P<depths>\d+)(?:x(?P<iterations>\d+))?(?:-(?P<head>[a-z]+))?")
GRAMMAR = "CNN | STN-<C|DL|SL><depths>[x<iterations>][-<head>] | STN-C<depth>-oracle"
PAPER_NETWORKS = (
    "CNN",
    "STN-C0",
    "STN-C1",
    "STN-DL1",
    "STN-SL1",
    "STN-C0-large",
    "STN-C0123",
    "STN-SL0123",
    "STN-SL3x2",
    "STN-SL6x2",
)


class InvalidNetworkName(ValueError):
    """A network name that does not follow the grammar or does not fit the backbone."""


@dataclass(frozen=True)
class TransformerSpec:
    """One spatial transformer of a network.

    depth: classifier blocks before it. reads: what its localisation network reads
    (``features``: the feature map at ``depth``; ``copy``: a re-initialised copy of
    blocks[:depth]; ``shared``: the classifier's blocks[:depth] themselves).
    transforms: ``features`` (the map at ``depth``) or ``input``. head: the
    backbone's localisation-head preset. composes: whether it composes with the
    input transformers before it (otherwise it resamples the already warped input).
    iterations: how many times it is applied. localisation: ``learned`` (a
    localisation network) or ``oracle`` (the exact inverse of each image's pose).
    """

    depth: int
    reads: Reads = "features"
    transforms: Transforms = "features"
    head: str = DEFAULT_HEAD
    composes: bool = False
    iterations: int = 1
    localisation: Localisation = "learned"

    def __post_init__(self) -> None:
        if self.depth < 0:
            raise InvalidNetworkName(f"transformer depth must be >= 0, got {self.depth}")
        if self.iterations < 1:
            raise InvalidNetworkName(f"iterations must be >= 1, got {self.iterations}")
        if self.transforms == "features" and self.reads != "features":
            raise InvalidNetworkName(
                f"a transformer that warps feature maps reads them: reads={self.reads!r} "
                "is only valid with transforms='input'"
            )
        if self.transforms == "features" and (self.composes or self.iterations > 1):
            raise InvalidNetworkName("only input-transforming transformers compose or iterate")
        if self.transforms == "input" and self.reads == "features" and self.depth > 0:
            raise InvalidNetworkName(
                "a transformer of the input at depth > 0 reads 'copy' or 'shared' blocks"
            )


@dataclass(frozen=True)
class NetworkSpec:
    """A backbone-independent description: a name and its transformers."""

    name: str
    transformers: tuple[TransformerSpec, ...] = ()

    @property
    def max_depth(self) -> int:
        return max((t.depth for t in self.transformers), default=0)

    @property
    def learns_localisation(self) -> bool:
        """Whether a transformer has a localisation network to learn (not only oracles)."""
        return any(t.localisation != "oracle" for t in self.transformers)


def _split_depths(digits: str) -> list[int]:
    if len(digits) > 1 and all(a < b for a, b in pairwise(digits)):
        return [int(d) for d in digits]
    return [int(digits)]


def parse_network_name(name: str) -> NetworkSpec:
    """The description a network name stands for; raises InvalidNetworkName."""
    if name == "CNN":
        return NetworkSpec(name)
    match = _NAME.fullmatch(name)
    if match is None:
        raise InvalidNetworkName(
            f"invalid network name {name!r}: expected {GRAMMAR}, e.g. {', '.join(PAPER_NETWORKS)}"
        )
    reads, transforms, composes = KINDS[match["kind"]]
    iterations = int(match["iterations"] or 1)
    depths = _split_depths(match["depths"])
    if match["head"] == ORACLE:
        if match["kind"] != "C" or len(depths) > 1:
            raise InvalidNetworkName(
                f"invalid network name {name!r}: an oracle is one transformer warping the map at "
                "its depth, written STN-C<depth>-oracle (STN-C0-oracle aligns the input)"
            )
        return NetworkSpec(name, (TransformerSpec(depths[0], localisation="oracle"),))
    if iterations > 1 and transforms == "features":
        raise InvalidNetworkName(
            f"invalid network name {name!r}: x<iterations> needs an input-transforming kind (DL, SL)"
        )
    transformers = tuple(
        TransformerSpec(depth, reads, transforms, match["head"] or DEFAULT_HEAD, composes, iterations)
        for depth in depths
    )
    return NetworkSpec(name, transformers)


def example_names(num_blocks: int) -> list[str]:
    """Valid single-transformer names for a backbone with ``num_blocks`` blocks, plus multi-ST forms."""
    names = ["CNN"]
    for kind in KINDS:
        names += [f"STN-{kind}{depth}" for depth in range(num_blocks + 1)]
    names += [f"STN-C{depth}-oracle" for depth in range(num_blocks + 1)]
    if num_blocks >= 3:
        names += ["STN-C0123", "STN-SL0123", "STN-SL3x2"]
    names.append("STN-C0-large")
    return names
