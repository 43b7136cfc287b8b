import pytest
import torch

from stn.bench.counting import device_operations
from stn.data.base import relative_residual
from stn.data.mnist.task import PAPER_TASKS, MNISTTask, augment, make_test_set, render_sprites, undo_matrix
from stn.geometry import affine_matrix, warp


@pytest.mark.parametrize("name", ["R", "S", "T"])
def test_paper_tasks_shapes_ranges_and_draws(digits, name):
    task = PAPER_TASKS[name]
    images, params = augment(digits.train_images[:200], task, torch.Generator().manual_seed(0))
    assert images.shape == (200, 1, task.canvas, task.canvas)
    assert images.min() >= 0 and images.max() <= 1
    assert params["angle"].abs().max() <= task.rotation
    lo, hi = task.log2_scale
    log_scale = params["scale"].log2()
    assert log_scale.min() >= lo - 1e-6 and log_scale.max() <= hi + 1e-6
    assert params["shift"].abs().max() <= task.translation
    if task.rotation:
        assert params["angle"].std() > task.rotation / 3  # spread over the range, not stuck
    if task.translation:
        assert params["shift"].abs().max() == task.translation


def test_same_generator_seed_same_images(digits):
    task = PAPER_TASKS["S"]
    a, _ = augment(digits.train_images[:16], task, torch.Generator().manual_seed(5))
    b, _ = augment(digits.train_images[:16], task, torch.Generator().manual_seed(5))
    c, _ = augment(digits.train_images[:16], task, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_translation_moves_the_digit_by_whole_pixels(digits):
    task = MNISTTask("T", canvas=60, translation=16)
    images, params = augment(digits.train_images[:8], task, torch.Generator().manual_seed(1))
    for image, digit, (dx, dy) in zip(
        images[:, 0], digits.train_images[:8], params["shift"].long(), strict=True
    ):
        top, left = 16 + int(dy), 16 + int(dx)
        torch.testing.assert_close(image[top : top + 28, left : left + 28], digit.float() / 255)
        assert image.sum() == pytest.approx(digit.float().sum().item() / 255, rel=1e-5)


def test_clutter_adds_ink_only_when_asked(digits):
    batch = digits.train_images[:64]
    plain, _ = augment(batch, MNISTTask("T", canvas=60, translation=16), torch.Generator().manual_seed(0))
    clutter, _ = augment(
        batch, MNISTTask("T", canvas=60, translation=16, clutter=6), torch.Generator().manual_seed(0)
    )
    assert plain.sum(dim=(1, 2, 3)).allclose(batch.float().sum(dim=(1, 2)) / 255)
    assert (clutter.sum(dim=(1, 2, 3)) >= plain.sum(dim=(1, 2, 3)) - 1e-4).all()
    assert clutter.sum() > plain.sum() * 1.05


def test_scale_changes_the_digit_size(digits):
    batch = digits.train_images[:1].repeat(2, 1, 1)
    small, _ = augment(batch, MNISTTask("S", canvas=112, log2_scale=(-1.0, -1.0)))
    large, _ = augment(batch, MNISTTask("S", canvas=112, log2_scale=(1.0, 1.0)))
    assert large.sum() / small.sum() == pytest.approx(16.0, rel=0.1)  # ink grows with the area


def test_augmentation_runs_on_the_digits_device(digits):
    images, params = augment(digits.train_images[:4].to("cpu"), PAPER_TASKS["R"])
    assert images.device.type == "cpu" and params["angle"].device.type == "cpu"


def test_fixed_test_set_is_reproducible_and_stores_its_parameters(digits):
    task = MNISTTask("R", rotation=90, test_repeats=3)
    images, labels, params = make_test_set(digits.test_images[:20], digits.test_labels[:20], task, seed=7)
    again, _, same = make_test_set(digits.test_images[:20], digits.test_labels[:20], task, seed=7)
    assert images.dtype == torch.uint8 and images.shape == (60, 1, 28, 28)
    assert torch.equal(images, again) and torch.equal(labels[:20], labels[20:40])
    assert set(params) == {"angle", "scale", "shift"} and params["angle"].shape == (60,)
    assert all(torch.equal(params[k], same[k]) for k in params)
    assert params["angle"].abs().max() <= 90 and params["angle"].std() > 30
    # they are the parameters the images were drawn with: undoing them aligns every copy
    aligned = warp(images.float() / 255, undo_matrix(params, task))
    canonical = digits.test_images[:20, None].float().repeat(3, 1, 1, 1) / 255
    assert relative_residual(aligned, canonical) < 0.25 < relative_residual(images.float() / 255, canonical)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"canvas": 20}, "canvas"),
        ({"log2_scale": (1.0, 0.0)}, "log2_scale"),
        ({"canvas": 40, "translation": 10}, "shifted digit"),
        ({"clutter_size": 30}, "clutter_size"),
    ],
)
def test_invalid_tasks_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MNISTTask("X", **kwargs)


def test_separable_and_grid_resampling_agree():
    """A real scaling is resampled separably; the same scaling as a complex factor (no rotation)
    goes through grid_sample: the two agree."""
    torch.manual_seed(0)
    sprites = torch.rand(4, 3, 6, 6)
    centres = torch.randn(4, 3, 2) * 10
    scaling = 1 / (torch.rand(4) * 2 + 0.5)
    separable, corners = render_sprites(sprites, centres, scaling, 60, 20)
    grid, same_corners = render_sprites(sprites, centres, torch.complex(scaling, torch.zeros(4)), 60, 20)
    torch.testing.assert_close(separable, grid, atol=1e-5, rtol=0)
    assert torch.equal(corners, same_corners) and separable.sum() > 0


def test_a_complex_factor_rotates_sprites_as_the_affine_warp_does():
    """One sprite over the whole canvas, through the factor e^{i angle} / scale, is the image
    ``warp`` gives with the affine matrix of that angle and scale."""
    torch.manual_seed(0)
    sprites = torch.rand(5, 1, 28, 28)
    angle, scale = torch.rand(5) * 180 - 90, 2 ** (torch.rand(5) - 0.5)
    factor = torch.polar(1 / scale, angle * (torch.pi / 180))
    drawn, corners = render_sprites(sprites, torch.zeros(5, 1, 2), factor, 28, 28)
    expected = warp(sprites, affine_matrix(angle, 1 / scale))
    torch.testing.assert_close(drawn, expected, atol=1e-5, rtol=0)
    assert not corners.any()


@pytest.mark.parametrize("name", ["R", "S", "T"])
def test_rendering_is_the_same_few_device_operations_for_any_batch(digits, name):
    """No per-sample work: a batch of 256 dispatches what a batch of 8 does (each operation is
    one kernel in a captured CUDA graph step)."""
    task = PAPER_TASKS[name]

    def operations(batch: int) -> int:
        draws = task.draw(batch, torch.Generator().manual_seed(0))
        return device_operations(lambda: task.render(digits.train_images[:batch], draws))

    assert operations(8) == operations(256)
