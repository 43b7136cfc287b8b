"""Statistics of the tables and the invariance measures: t-intervals over seeds, paired
differences, orthogonal regression and the residual pose spread."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean with the half-width of its two-sided t-interval (None with fewer than 2 values)."""

    mean: float
    half_width: float | None
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of ``values`` and the half-width ``t(n-1) * s / sqrt(n)`` of its ``confidence`` interval."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("t_interval needs at least one value")
    if data.size == 1:
        return Interval(float(data[0]), None, 1)
    quantile = stats.t.ppf(0.5 + confidence / 2, data.size - 1)
    return Interval(float(data.mean()), float(quantile * data.std(ddof=1) / math.sqrt(data.size)), data.size)


def paired_difference(first: Mapping[int, float], second: Mapping[int, float]) -> Interval:
    """``first - second`` over the seeds both have, with its t-interval (paired by seed)."""
    seeds = sorted(set(first) & set(second))
    if not seeds:
        raise ValueError("no seed in common: a paired difference needs runs with the same seeds")
    return t_interval([first[s] - second[s] for s in seeds])


def deming_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Slope of the orthogonal (Deming, equal error variances) regression of ``y`` on ``x``.

    0 when ``y`` does not vary with ``x`` (e.g. a transformer that predicts the identity)."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    sxx, syy = xs.var(), ys.var()
    sxy = float(((xs - xs.mean()) * (ys - ys.mean())).mean())
    if abs(sxy) <= 1e-12 * max(sxx, syy, 1e-300):
        return 0.0 if syy <= sxx else math.inf
    return float((syy - sxx + math.sqrt((syy - sxx) ** 2 + 4 * sxy**2)) / (2 * sxy))


def pose_spread(residual: Sequence[float], labels: Sequence[int]) -> float:
    """Mean over classes of the root mean squared deviation of ``residual`` (applied plus
    predicted transformation, e.g. angles) from its class mean: 0 when every image of a
    class ends in one pose, whatever the pose."""
    res, lab = np.asarray(residual, dtype=float), np.asarray(labels)
    spreads = [np.sqrt(np.square(res[lab == c] - res[lab == c].mean()).mean()) for c in np.unique(lab)]
    return float(np.mean(spreads))
