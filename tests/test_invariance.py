import pytest
import torch

from stn import build_network
from stn.evaluation import summarise_rotations
from stn.geometry import affine_matrix, compose, identity, invert, rotation_angle
from stn.invariance import (
    FULL_TURN_ANGLES,
    ROTATION_PROBE_ANGLES,
    _transformers_in_order,
    oracle,
    oracle_output_change,
    output_change,
    predicted_angles,
    rotation_responses,
    rotation_undone,
    transformation,
    transformed,
)
from stn.statistics import deming_slope, pose_spread

INPUT_TRANSFORMING = [
    "STN-C0",
    "STN-C0-large",
    "STN-DL1",
    "STN-SL1",
    "STN-SL2",
    "STN-SL012",
    "STN-SL1x2",
]
FEATURE_TRANSFORMING = ["STN-C1", "STN-C2", "STN-C12"]


@pytest.mark.parametrize("angle", [90.0, 180.0])
def test_oracle_input_alignment_is_invariant_feature_alignment_is_not(images, angle):
    """The paper's proof, numerically: a rotation can be undone on the input but
    not on feature maps, whose channels respond differently to a rotated image."""
    torch.manual_seed(0)
    theta = transformation("rotation", angle, len(images))
    for name in INPUT_TRANSFORMING:
        change = oracle_output_change(build_network(name, "mnist"), images, theta)
        assert change.max() < 1e-4, name
    for name in FEATURE_TRANSFORMING:
        change = oracle_output_change(build_network(name, "mnist"), images, theta)
        assert change.mean() > 0.2, name


def test_oracle_undoes_non_grid_rotations_up_to_interpolation(images):
    torch.manual_seed(0)
    theta = transformation("rotation", 30.0, len(images))
    input_change = oracle_output_change(build_network("STN-SL1", "mnist"), images, theta).mean()
    feature_change = oracle_output_change(build_network("STN-C1", "mnist"), images, theta).mean()
    assert input_change < feature_change / 2


def test_plain_cnn_is_not_invariant_and_oracle_needs_a_transformer(images):
    cnn = build_network("CNN", "mnist")
    assert output_change(cnn, images, transformation("rotation", 90.0, len(images))).mean() > 0.2
    with (
        pytest.raises(ValueError, match="no spatial transformer"),
        oracle(cnn, torch.eye(2, 3)[None]),
    ):
        pass


def test_oracle_is_removed_after_use(images):
    model = build_network("STN-C0", "mnist").eval()
    before = model(images)
    with oracle(model, transformation("rotation", 90.0, len(images))):
        assert not torch.allclose(model(images), before)
    torch.testing.assert_close(model(images), before)


def test_unknown_transformation():
    with pytest.raises(ValueError, match="unknown transformation"):
        transformation("shear", 1.0, 1)


def _install_aligner(model, images: torch.Tensor, share: float) -> None:
    """Replace the first transformer's localisation by a stand-in that recognises which
    probe rotation its input comes from and predicts the warp undoing ``share`` of it."""
    transformer = _transformers_in_order(model)[0]
    reads_input = transformer.spec.transforms == "input"
    before = torch.nn.Sequential(*([] if reads_input else model.blocks[: transformer.spec.depth]))
    candidates = {
        angle: before(transformed(images, transformation("rotation", angle, len(images))))
        for angle in ROTATION_PROBE_ANGLES
    }

    def predict(x: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        angle = min(candidates, key=lambda a: float((candidates[a] - x).abs().sum()))
        return transformation("rotation", -share * angle, len(x))

    transformer.forward = predict


@pytest.mark.parametrize("name", ["STN-C0", "STN-SL1", "STN-C1"])
@pytest.mark.parametrize("share", [1.0, 0.5])
def test_rotation_undone_measures_the_share_of_rotation_undone(images, name, share):
    model = build_network(name, "mnist").eval()
    with torch.no_grad():
        _install_aligner(model, images, share)
    assert rotation_undone(model, images) == pytest.approx(share, abs=1e-4)


def test_rotation_undone_is_zero_at_initialisation_and_none_without_transformer(images):
    assert rotation_undone(build_network("STN-SL1", "mnist"), images) == pytest.approx(0.0, abs=1e-6)
    assert rotation_undone(build_network("CNN", "mnist"), images) is None


def test_oracle_network_undoes_every_probe_rotation_given_the_poses(images):
    """The trained oracle's measures: every rotated copy is aligned (undone 1), and the angle
    it applies is minus the applied one (slope -1, spread 0)."""
    model = build_network("STN-C1-oracle", "mnist").eval()
    applied = torch.linspace(-80, 80, len(images))
    poses = invert(affine_matrix(applied))  # the images as if rotated by `applied`
    assert rotation_undone(model, images, poses=poses) == pytest.approx(1.0, abs=1e-4)
    predicted = predicted_angles(model, images, poses)
    torch.testing.assert_close(predicted, -applied, atol=1e-3, rtol=0)
    assert deming_slope(applied.numpy(), predicted.numpy()) == pytest.approx(-1.0, abs=1e-4)
    assert pose_spread((applied + predicted).numpy(), [0] * len(images)) < 1e-3


@pytest.mark.parametrize("angle", [-179.0, -135.0, -22.5, 0.0, 60.0, 179.0])
def test_angle_is_read_from_constructed_matrices(angle):
    """``-atan2(a01 - a10, a00 + a11)``: the rotation of a similarity, whatever its scale and
    translation, and of the rotation part of a composed warp; a half turn reads as -180."""
    theta = affine_matrix(torch.tensor([angle]), 1.7, tx=0.3, ty=-0.2)
    a = theta[0]
    by_formula = -torch.rad2deg(torch.atan2(a[0, 1] - a[1, 0], a[0, 0] + a[1, 1]))
    assert rotation_angle(theta).item() == pytest.approx(angle, abs=1e-4)
    assert by_formula.item() == pytest.approx(angle, abs=1e-4)
    twice = compose(theta, affine_matrix(torch.tensor([angle]), 0.5))
    assert rotation_angle(twice).item() == pytest.approx((2 * angle + 180) % 360 - 180, abs=1e-3)
    assert rotation_angle(affine_matrix(torch.tensor([180.0]))).abs().item() == pytest.approx(180.0, abs=1e-4)


def test_full_turn_is_numpy_linspace_without_endpoint():
    np = pytest.importorskip("numpy")
    np.testing.assert_allclose(FULL_TURN_ANGLES, np.linspace(-180, 180, 17, endpoint=False))


def test_rotation_responses_of_an_oracle_compensate_and_of_the_identity_do_not(images):
    """An oracle transformer given each image's pose predicts minus every applied angle (a
    residual spread of 0); an untrained transformer (the identity) ignores the rotations (the
    spread of residuals evenly over the circle)."""
    angles = FULL_TURN_ANGLES
    oracle_model = build_network("STN-C0-oracle", "mnist").eval()
    predicted = rotation_responses(oracle_model, images[:6], angles, poses=identity(6), batch_size=4)
    assert predicted.shape == (6, len(angles))
    wrapped = (-torch.tensor(angles) + 180) % 360 - 180
    assert torch.allclose(((predicted - wrapped + 180) % 360 - 180), torch.zeros(()), atol=1e-3)
    summary = summarise_rotations(predicted.numpy(), angles)
    assert summary["spread"]["360"] == pytest.approx(0.0, abs=1e-3)
    assert summary["spread"]["180"] == pytest.approx(0.0, abs=1e-3)
    assert [sum(row) for row in summary["predicted_histogram"]] == [6] * len(angles)

    untrained = rotation_responses(build_network("STN-SL1", "mnist"), images[:6], angles)
    assert untrained.abs().max() < 1e-4
    summary = summarise_rotations(untrained.numpy(), angles)
    assert summary["spread"] == pytest.approx(summary["spread_ignoring"])
    assert summary["spread"]["360"] == pytest.approx(2 * summary["spread"]["180"])
    with pytest.raises(ValueError, match="no spatial transformer"):
        rotation_responses(build_network("CNN", "mnist"), images[:2], angles)
