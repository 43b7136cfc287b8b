import pytest

from stn.variants import (
    PAPER_NETWORKS,
    InvalidNetworkName,
    TransformerSpec,
    example_names,
    parse_network_name,
)


def test_cnn_has_no_transformer():
    assert parse_network_name("CNN").transformers == ()


@pytest.mark.parametrize(
    ("name", "depths", "reads", "transforms", "composes"),
    [
        ("STN-C0", [0], "features", "features", False),
        ("STN-C1", [1], "features", "features", False),
        ("STN-DL1", [1], "copy", "input", True),
        ("STN-SL1", [1], "shared", "input", True),
        ("STN-C0123", [0, 1, 2, 3], "features", "features", False),
        ("STN-SL0123", [0, 1, 2, 3], "shared", "input", True),
        ("STN-C10", [10], "features", "features", False),
    ],
)
def test_names_map_to_descriptions(name, depths, reads, transforms, composes):
    spec = parse_network_name(name)
    assert [t.depth for t in spec.transformers] == depths
    assert {(t.reads, t.transforms, t.composes) for t in spec.transformers} == {(reads, transforms, composes)}


def test_iterations_and_heads():
    (sl3,) = parse_network_name("STN-SL3x2").transformers
    assert (sl3.depth, sl3.iterations, sl3.head) == (3, 2, "small")
    (large,) = parse_network_name("STN-C0-large").transformers
    assert large.head == "large"


@pytest.mark.parametrize(
    "name", ["stn-c1", "STN-X1", "STN-C", "STN-C1x", "STN-C1x2", "CNN2", "STN-SL1x0", ""]
)
def test_malformed_names_say_what_is_valid(name):
    with pytest.raises(InvalidNetworkName, match=r"CNN|iterations"):
        parse_network_name(name)


def test_inconsistent_transformer_specs_are_rejected():
    with pytest.raises(InvalidNetworkName, match="reads"):
        TransformerSpec(1, reads="shared", transforms="features")
    with pytest.raises(InvalidNetworkName, match="depth > 0"):
        TransformerSpec(2, reads="features", transforms="input")


def test_listed_names_parse():
    for name in (*PAPER_NETWORKS, *example_names(8)):
        assert parse_network_name(name).name == name


def test_oracle_names():
    (oracle,) = parse_network_name("STN-C2-oracle").transformers
    assert (oracle.depth, oracle.localisation, oracle.transforms) == (2, "oracle", "features")
    assert parse_network_name("STN-C2").transformers[0].localisation == "learned"


@pytest.mark.parametrize("name", ["STN-SL1-oracle", "STN-DL1-oracle", "STN-C01-oracle"])
def test_oracles_are_single_feature_transformers(name):
    with pytest.raises(InvalidNetworkName, match="STN-C<depth>-oracle"):
        parse_network_name(name)
