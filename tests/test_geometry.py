import pytest
import torch
import torch.nn.functional as F

from stn.geometry import (
    affine_grid,
    affine_matrix,
    compose,
    decompose,
    identity,
    in_frame,
    inverse_2x2,
    invert,
    rotation_angle,
    similarity_matrix,
    warp,
)


def smooth(images: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 256.0)[None, None]
    return F.conv2d(images, kernel, padding=2)


def test_affine_grid_matches_torch():
    theta = affine_matrix(
        torch.randn(5) * 60,
        torch.rand(5) + 0.5,
        torch.rand(5) + 0.5,
        torch.randn(5) * 0.2,
        torch.randn(5) * 0.3,
        torch.randn(5) * 0.3,
    )
    ours = affine_grid(theta, 9, 13)
    reference = F.affine_grid(theta, [5, 1, 9, 13], align_corners=False)
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=0)


def test_identity_warp_returns_the_image(images):
    torch.testing.assert_close(warp(images, identity(len(images))), images, atol=1e-5, rtol=0)


@pytest.mark.parametrize("quarter_turns", [1, 2, 3])
def test_quarter_turns_are_exact_pixel_permutations(images, quarter_turns):
    theta = affine_matrix(90.0 * quarter_turns).expand(len(images), 2, 3)
    rotated = warp(images, theta)
    # the sampling grid turns by +angle, so the content turns the other way
    expected = torch.rot90(images, k=quarter_turns, dims=(-2, -1))
    torch.testing.assert_close(rotated, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(warp(rotated, invert(theta)), images, atol=1e-5, rtol=0)


@pytest.mark.parametrize("angle", [17.0, -33.0, 60.0])
def test_rotation_then_inverse_returns_the_image_away_from_borders(images, angle):
    image = smooth(F.pad(images, (14, 14, 14, 14)))  # room to rotate, band-limited
    theta = affine_matrix(angle).expand(len(image), 2, 3)
    back = warp(warp(image, theta), invert(theta))
    centre = (slice(None), slice(None), slice(14, 42), slice(14, 42))
    error = (back - image)[centre].abs()
    assert error.mean() < 0.1 * image[centre].mean() and error.max() < 0.15, error.max()
    # a wrong inverse does not return it
    assert (warp(warp(image, theta), theta) - image)[centre].abs().max() > 0.3


def test_compose_is_sequential_warping(images):
    image = smooth(F.pad(images, (14, 14, 14, 14)))
    a = affine_matrix(25.0, 0.9).expand(len(image), 2, 3)
    b = affine_matrix(-10.0, 1.1, None, 0.0, 0.05, -0.02).expand(len(image), 2, 3)
    twice = warp(warp(image, a), b)
    once = warp(image, compose(a, b))
    error = (twice - once)[..., 14:42, 14:42].abs()
    assert error.mean() < 0.1 * image[..., 14:42, 14:42].mean() and error.max() < 0.15
    torch.testing.assert_close(compose(a, invert(a)), identity(len(image)), atol=1e-6, rtol=0)


def test_decompose_inverts_affine_matrix():
    params = {
        "angle": torch.tensor([30.0, -120.0, 5.0]),
        "scale_x": torch.tensor([1.5, 0.7, 1.0]),
        "scale_y": torch.tensor([0.8, 1.2, 1.0]),
        "shear": torch.tensor([0.2, -0.1, 0.0]),
        "tx": torch.tensor([0.1, 0.0, -0.4]),
        "ty": torch.tensor([-0.3, 0.2, 0.0]),
    }
    theta = affine_matrix(
        params["angle"],
        params["scale_x"],
        params["scale_y"],
        params["shear"],
        params["tx"],
        params["ty"],
    )
    recovered = decompose(theta)
    for key, value in params.items():
        torch.testing.assert_close(recovered[key], value, atol=1e-4, rtol=1e-4)


def test_rotation_angle_of_similarities():
    angles = torch.tensor([-170.0, -45.0, 0.0, 80.0])
    torch.testing.assert_close(rotation_angle(affine_matrix(angles, 2.0)), angles, atol=1e-4, rtol=0)


def test_a_complex_factor_and_offset_are_the_similarity_matrix():
    angle, scale = torch.tensor([-170.0, 0.0, 33.0]), torch.tensor([0.5, 1.0, 3.0])
    offset = torch.complex(torch.tensor([0.1, 0.0, -0.4]), torch.tensor([-0.3, 0.2, 0.0]))
    factor = torch.polar(scale, angle * (torch.pi / 180))
    expected = affine_matrix(angle, scale, tx=offset.real, ty=offset.imag)
    torch.testing.assert_close(similarity_matrix(factor, offset), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("frame", [(1.0, 0.0), (0.5, 0.0), (0.75, -0.1)])
def test_in_frame_is_the_warp_conjugated_by_the_frame(frame):
    """Closed form against ``frame^-1 @ theta @ frame`` of the frame's matrix."""
    theta = affine_matrix(torch.tensor([30.0, -100.0]), torch.tensor([1.3, 0.6]), tx=0.2, ty=-0.4)
    scale, offset = frame
    matrix = torch.tensor([[[scale, 0.0, offset], [0.0, scale, offset]]]).expand(2, 2, 3)
    expected = compose(compose(invert(matrix), theta), matrix)
    torch.testing.assert_close(in_frame(theta, frame), expected, atol=1e-6, rtol=0)


def _near_identity(batch: int, seed: int) -> torch.Tensor:
    """Float64 warps a small random step from the identity (so the grid stays inside the image)."""
    generator = torch.Generator().manual_seed(seed)
    step = 0.2 * torch.randn(batch, 2, 3, generator=generator, dtype=torch.float64)
    return identity(batch, dtype=torch.float64) + step


def test_affine_grid_gradients_match_finite_differences():
    """The localisation networks train through the grid: its gradient by theta, as kornia tests its warps."""
    theta = _near_identity(2, 0).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: affine_grid(t, 5, 4), (theta,))


def test_inverse_2x2_gradients_match_finite_differences():
    matrices = _near_identity(3, 1)[..., :2].clone().requires_grad_()
    assert torch.autograd.gradcheck(inverse_2x2, (matrices,))
    assert torch.autograd.gradcheck(invert, (_near_identity(3, 2).requires_grad_(),))


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_warp_gradients_by_image_and_theta_match_finite_differences(padding_mode):
    """Bilinear sampling is smooth between pixel centres: random near-identity warps of a random
    image almost surely sample no point on one (where finite differences would see a kink)."""
    image = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    theta = _near_identity(2, 4).requires_grad_()

    def warped(picture: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return warp(picture, t, padding_mode=padding_mode)

    assert torch.autograd.gradcheck(warped, (image.requires_grad_(), theta))
