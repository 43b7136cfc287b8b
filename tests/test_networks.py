import pytest
import torch

from stn import build_network, parse_network_name
from stn.backbones import build_backbone
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
    out = model(x)
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
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5, msg=name)
        for theta in model.run(x).thetas.values():
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
