import pytest
import torch

from stn import build_network, parse_network_name
from stn.backbones import build_backbone
from stn.data.mnist.task import MNISTTask, augment, undo_matrix
from stn.geometry import affine_matrix, identity, warp
from stn.networks import STNetwork
from stn.variants import example_names

BACKBONES = {"mnist": (1, 28), "svhn": (3, 64), "plankton": (1, 95)}
SMALL = {
    "mnist": {},
    "svhn": {"channels": [4, 4, 6, 6, 8, 8, 8, 8], "hidden": [16, 16, 16]},
    "plankton": {"channels": [4] * 10, "hidden": [16, 16]},
}
MNIST_VARIANTS = [
    *example_names(2),
    "STN-C012",
    "STN-SL012",
    "STN-DL12",
    "STN-SL2x3",
    "STN-SL1-large",
]
DEEP_VARIANTS = [
    "CNN",
    "STN-C0-large",
    "STN-C0123",
    "STN-SL0123",
    "STN-C3",
    "STN-DL3",
    "STN-SL6x2",
    "STN-C8",
    "STN-SL8",
]


def run_forward_backward(model: STNetwork, channels: int, size: int) -> torch.Tensor:
    x = torch.rand(2, channels, size, size)
    pose = affine_matrix(torch.tensor([30.0, -60.0]), 1.2, tx=0.1) if model.needs_pose else None
    out = model(x, pose)
    out.sum().backward()
    assert all(p.grad is not None for p in model.classifier_parameters())
    return out


@pytest.mark.parametrize("name", MNIST_VARIANTS)
@pytest.mark.parametrize("size", [28, 60])
def test_mnist_variants_forward_and_backward(name, size):
    out = run_forward_backward(build_network(name, "mnist", input_size=size), 1, size)
    assert out.shape == (2, 10)


@pytest.mark.parametrize("backbone", ["svhn", "plankton"])
@pytest.mark.parametrize("name", DEEP_VARIANTS)
def test_deep_backbone_variants_at_real_input_sizes(backbone, name):
    channels, size = BACKBONES[backbone]
    out = run_forward_backward(build_network(name, backbone, **SMALL[backbone]), channels, size)
    assert out.shape == {"svhn": (2, 5, 11), "plankton": (2, 121)}[backbone]


def test_paper_backbones_have_the_paper_shapes():
    svhn = build_backbone("svhn")
    assert svhn.num_blocks == 8 and svhn.feature_shapes[-1] == (192, 4, 4)
    assert svhn(torch.rand(1, 3, 64, 64)).shape == (1, 5, 11)
    plankton = build_backbone("plankton")
    assert plankton.num_blocks == 10 and plankton.feature_shapes[-1] == (256, 5, 5)
    assert plankton(torch.rand(1, 1, 95, 95)).shape == (1, 121)
    mnist = build_backbone("mnist")
    assert [s[1] for s in mnist.feature_shapes] == [28, 10, 2]


def test_shared_localisation_uses_the_classifiers_own_parameters():
    model = build_network("STN-SL2", "mnist")
    body = model.input_transformers[0].body
    for loc_block, block in zip(body, model.blocks, strict=True):
        assert loc_block is block
        assert loc_block[0].weight is block[0].weight
    shared = {id(p) for p in model.classifier_parameters()}
    assert not shared & {id(p) for p in model.localisation_parameters()}


def test_deep_localisation_copies_and_reinitialises():
    torch.manual_seed(0)
    model = build_network("STN-DL2", "mnist")
    body = model.input_transformers[0].body
    for loc_block, block in zip(body, model.blocks, strict=True):
        assert loc_block[0].weight is not block[0].weight
        assert not torch.equal(loc_block[0].weight, block[0].weight)
    shared = {id(p) for p in model.classifier_parameters()}
    loc = {id(p) for p in model.localisation_parameters()}
    assert {id(p) for p in body.parameters()} <= loc and not shared & loc


@pytest.mark.parametrize("backbone", ["mnist", "svhn", "plankton"])
def test_every_network_starts_as_the_cnn(backbone):
    channels, size = BACKBONES[backbone]
    torch.manual_seed(0)
    cnn = build_network("CNN", backbone, **SMALL[backbone]).eval()
    x = torch.rand(3, channels, size, size)
    expected = cnn(x)
    names = MNIST_VARIANTS if backbone == "mnist" else DEEP_VARIANTS
    for name in names:
        model = build_network(name, backbone, **SMALL[backbone]).eval()
        missing = model.load_state_dict(cnn.state_dict(), strict=False).missing_keys
        assert all("transformers" in key for key in missing)
        pose = identity(len(x)) if model.needs_pose else None  # an oracle of untransformed images
        torch.testing.assert_close(model(x, pose), expected, atol=1e-5, rtol=1e-5, msg=name)
        for theta in model.run(x, pose).thetas.values():
            torch.testing.assert_close(theta, torch.eye(2, 3).expand_as(theta))


def test_localisation_heads_start_at_the_identity():
    model = build_network("STN-C0123", "svhn", **SMALL["svhn"])
    heads = [t.head.theta for t in model.feature_transformers.values()]
    assert len(heads) == 4
    for head in heads:
        assert torch.count_nonzero(head.weight) == 0
        assert head.bias.tolist() == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_iterative_alignment_resamples_the_original_input_once():
    model = build_network("STN-SL1x2", "mnist")
    (transformer,) = model.input_transformers
    with torch.no_grad():
        transformer.head.theta.bias.copy_(torch.tensor([0.9, 0.1, 0.05, -0.1, 0.9, 0.0]))
    x = torch.rand(2, 1, 28, 28)
    result = model.run(x)
    from stn.geometry import compose, warp

    first, second = result.thetas["SL1.1"], result.thetas["SL1.2"]
    torch.testing.assert_close(result.thetas["input"], compose(first, second))
    torch.testing.assert_close(result.aligned, warp(x, compose(first, second), padding_mode="border"))


def test_invalid_depth_and_head_are_clear_errors():
    with pytest.raises(ValueError, match="depth 3 exceeds the backbone's 2 blocks"):
        build_network("STN-C3", "mnist")
    with pytest.raises(ValueError, match="unknown localisation head 'huge'"):
        build_network("STN-C0-huge", "mnist")
    with pytest.raises(ValueError, match="unknown backbone"):
        build_network("CNN", "resnet")


def test_spec_objects_build_networks_too():
    spec = parse_network_name("STN-DL1")
    assert isinstance(build_network(spec, "mnist"), STNetwork)


@pytest.mark.parametrize("backbone", ["mnist", "svhn", "plankton"])
def test_feature_frames_place_each_map_in_the_input(backbone):
    """A map pixel's centre, in the input's normalised coordinates, is scale * u + offset:
    checked against the centre of its receptive field, found with one image per input
    column (a vertical line) through blocks with positive weights."""
    channels, size = BACKBONES[backbone]
    size *= 2  # room for unclipped fields at every depth
    model = build_backbone(backbone, input_size=size, **SMALL[backbone]).eval()
    with torch.no_grad():
        for conv in model.modules():
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.fill_(1.0 / conv.weight[0].numel())
                conv.bias.zero_()
        lines = torch.zeros(size, channels, size, size)
        lines[torch.arange(size), :, :, torch.arange(size)] = 1.0
        checked, maps = 0, lines
        for depth in range(1, model.num_blocks + 1):
            scale, offset = model.feature_frames[depth]
            width = model.feature_shapes[depth][1]
            maps = model.blocks[depth - 1](maps)  # the maps at this depth
            response = maps[:, :, width // 2].sum(1)
            for column in (0, width // 2, width - 1):
                seen = response[:, column].nonzero().flatten().float()
                if seen.min() > 0 and seen.max() < size - 1:  # a field not clipped by the border
                    centre = (seen.min() + seen.max() + 1) / size - 1
                    u = (2 * column + 1) / width - 1
                    assert float(centre) == pytest.approx(scale * u + offset, abs=1e-5), depth
                    checked += 1
    assert checked >= model.num_blocks - 1  # deep fields may cover the whole image


def test_mnist_depth_one_map_covers_the_central_20_pixels():
    assert build_backbone("mnist", input_size=28).feature_frames[1] == pytest.approx((20 / 28, 0.0))


def test_oracle_aligns_translated_feature_maps_exactly(digits):
    """Translations commute with convolutions: the oracle's inverse shift, converted to the
    depth-1 map's coordinates (a valid 9x9 conv shrinks its field of view), aligns the maps of
    a shifted digit with those of the centred one, away from the borders (the shifted map
    lacks what moved out of its field of view)."""
    task = MNISTTask("T", canvas=36, translation=4)
    model = build_network("STN-C1-oracle", "mnist", input_size=36).eval()
    centred, _ = augment(digits.test_images[:16], MNISTTask("canonical", canvas=36))
    shift = torch.tensor([[4, -2], [-4, 2]]).repeat(8, 1)  # (dx, dy): whole map pixels after pool 2
    shifted = torch.stack(
        [img.roll((int(dy), int(dx)), (-2, -1)) for img, (dx, dy) in zip(centred, shift, strict=True)]
    )
    params = {"angle": torch.zeros(16), "scale": torch.ones(16), "shift": shift.float()}
    with torch.no_grad():
        block = model.blocks[0]
        maps, reference = block(shifted), block(centred)
        theta = model.feature_transformers["1"](maps, undo_matrix(params, task))
        aligned = warp(maps, theta, padding_mode=model.padding_mode)
        unconverted = warp(maps, undo_matrix(params, task), padding_mode=model.padding_mode)
    inside = (..., slice(2, -2), slice(2, -2))  # the largest shift is 2 map pixels
    reference = reference[inside]
    assert (aligned[inside] - reference).norm() / reference.norm() < 1e-5
    assert (unconverted[inside] - reference).norm() / reference.norm() > 0.1  # the input's frame


def test_oracle_networks_learn_only_the_classifier_and_need_poses():
    model = build_network("STN-C1-oracle", "mnist")
    assert model.needs_pose and not model.localisation_parameters()
    assert not build_network("STN-SL1", "mnist").needs_pose
    with pytest.raises(ValueError, match="needs the pose of every image"):
        model(torch.rand(2, 1, 28, 28))
