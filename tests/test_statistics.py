import numpy as np
import pytest

from stn.statistics import (
    angular_distance,
    circular_mean,
    deming_slope,
    medoid_spread,
    paired_difference,
    pose_spread,
    t_interval,
    wrap_degrees,
)


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


def test_angular_distance_modulo_360_and_the_authors_modulo_180():
    a = np.array([170.0, -170.0, 0.0, 90.0, 180.0, 10.0])
    b = np.array([-170.0, 170.0, 180.0, -90.0, -180.0, 350.0])
    np.testing.assert_allclose(angular_distance(a, b), [20.0, 20.0, 180.0, 180.0, 0.0, 20.0])
    # modulo 180 a half turn is no distance at all: an image upside down counts as aligned
    np.testing.assert_allclose(angular_distance(a, b, period=180), [20.0, 20.0, 0.0, 0.0, 0.0, 20.0])
    np.testing.assert_allclose(wrap_degrees([180.0, -180.0, 190.0, 540.0]), [-180.0, -180.0, -170.0, -180.0])


def test_medoid_spread_on_constructed_residuals():
    # every rotated copy in one pose: no spread, whatever the pose
    assert medoid_spread(np.full((3, 17), 42.0)).tolist() == [0.0, 0.0, 0.0]
    # residuals evenly over the circle (a transformer that ignores rotations): the mean distance
    # from any one of 17 points, 360/17 apart, to the other 16
    even = np.array([[-180.0 + 360.0 * k / 17 for k in range(17)]])
    expected = sum(min(k, 17 - k) * 360.0 / 17 for k in range(1, 17)) / 16
    assert medoid_spread(even)[0] == pytest.approx(expected)
    # the medoid is the copy nearest the others: 0, 0, 0, 10 -> mean distance 10 / 3 from 0
    assert medoid_spread(np.array([[0.0, 0.0, 0.0, 10.0]]))[0] == pytest.approx(10.0 / 3)
    # half the copies upright, half upside down: spread modulo 360, none modulo 180
    flipped = np.array([[0.0, 180.0] * 4])
    assert medoid_spread(flipped)[0] == pytest.approx(4 * 180.0 / 7)
    assert medoid_spread(flipped, period=180)[0] == 0.0
    with pytest.raises(ValueError, match="shape"):
        medoid_spread(np.zeros(5))


def test_circular_mean_wraps():
    np.testing.assert_allclose(
        circular_mean(np.array([[170.0, 10.0], [-170.0, 30.0]])), [-180.0, 20.0], atol=1e-9
    )
