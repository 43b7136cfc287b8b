"""Statistics of the tables and the invariance measures: t-intervals over seeds, paired
differences, orthogonal regression and the residual pose spread."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

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
    from scipy import stats  # here: a job that measures no interval does not import scipy (2 s)

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


def wrap_degrees(angles: np.ndarray | float, period: float = 360.0) -> np.ndarray:
    """Angles moved into ``[-period / 2, period / 2)``."""
    return (np.asarray(angles, dtype=float) + period / 2) % period - period / 2


def angular_distance(a: np.ndarray | float, b: np.ndarray | float, period: float = 360.0) -> np.ndarray:
    """The distance of two angles (degrees) on a circle of ``period`` degrees, in [0, period / 2].

    Rotations are periodic in 360°: ``period=360`` is the distance of two rotations. The
    authors measured modulo 180°, where a residual of 180° (an upside-down result) counts as 0."""
    return np.abs(wrap_degrees(np.asarray(a, dtype=float) - b, period))


def medoid_spread(residuals: np.ndarray, period: float = 360.0) -> np.ndarray:
    """Per row of ``residuals`` (N, A), the mean :func:`angular_distance` of its medoid (the
    entry closest, in sum, to the others) to the other ``A - 1`` entries. 0: every rotated copy
    of an image ends in one pose; residuals spread evenly over the circle give the most."""
    res = np.asarray(residuals, dtype=float)
    if res.ndim != 2 or res.shape[1] < 2:
        raise ValueError(f"medoid_spread needs residuals of shape (N, A) with A >= 2, got {res.shape}")
    distances = angular_distance(res[:, :, None], res[:, None, :], period)  # (N, A, A)
    return distances.sum(axis=2).min(axis=1) / (res.shape[1] - 1)


def circular_mean(angles: np.ndarray, axis: int = 0) -> np.ndarray:
    """The mean direction (degrees, in [-180, 180)) of ``angles`` along ``axis``."""
    rad = np.deg2rad(np.asarray(angles, dtype=float))
    mean = np.arctan2(np.sin(rad).mean(axis=axis), np.cos(rad).mean(axis=axis))
    return wrap_degrees(np.rad2deg(mean))
