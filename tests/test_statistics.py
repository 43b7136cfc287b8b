import numpy as np
import pytest

from stn.statistics import deming_slope, paired_difference, pose_spread, t_interval


def test_t_interval_on_known_numbers():
    # mean 2, sample sd 1, n 3: half-width t(0.975, 2) * 1 / sqrt(3) = 4.302653 / 1.732051
    interval = t_interval([1.0, 2.0, 3.0])
    assert interval.mean == 2.0 and interval.n == 3
    assert interval.half_width == pytest.approx(2.484138, abs=1e-6)
    assert interval.low == pytest.approx(2.0 - 2.484138, abs=1e-6)
    # two values: t(0.975, 1) = 12.7062
    assert t_interval([4.0, 6.0]).half_width == pytest.approx(12.7062047 * 2**0.5 / 2**0.5, abs=1e-6)


def test_one_value_has_no_interval_and_none_is_an_error():
    interval = t_interval([3.5])
    assert interval.mean == 3.5 and interval.half_width is None and interval.n == 1
    with pytest.raises(ValueError, match="at least one"):
        t_interval([])


def test_paired_difference_uses_common_seeds():
    difference = paired_difference({0: 5.0, 1: 4.0, 2: 9.0}, {0: 3.0, 1: 3.0})
    assert difference.mean == pytest.approx(1.5) and difference.n == 2
    with pytest.raises(ValueError, match="no seed in common"):
        paired_difference({0: 1.0}, {1: 1.0})


def test_deming_slope_of_a_perfect_aligner_is_minus_one_and_of_the_identity_zero():
    rng = np.random.default_rng(0)
    applied = rng.uniform(-90, 90, 2000)
    assert deming_slope(applied, -applied) == pytest.approx(-1.0)
    assert deming_slope(applied, np.zeros_like(applied)) == 0.0
    assert deming_slope(applied, -0.5 * applied) == pytest.approx(-0.5)
    # orthogonal regression is symmetric under noise in both variables, unlike least squares
    noisy = -applied + rng.normal(0, 20, applied.size)
    assert deming_slope(applied + rng.normal(0, 20, applied.size), noisy) == pytest.approx(-1.0, abs=0.05)


def test_pose_spread_on_a_constructed_case():
    labels = np.array([0, 0, 0, 0, 1, 1])
    # class 0 ends at poses 10, 10, 10, 10 (one canonical pose, whatever it is): spread 0;
    # class 1 at 0 and 20: deviations of 10 from the class mean: spread 10
    residual = np.array([10.0, 10.0, 10.0, 10.0, 0.0, 20.0])
    assert pose_spread(residual, labels) == pytest.approx(5.0)  # mean of 0 and 10
    uniform = np.random.default_rng(0).uniform(-90, 90, 100_000)
    assert pose_spread(uniform, np.zeros(uniform.size)) == pytest.approx(180 / 12**0.5, rel=0.01)
