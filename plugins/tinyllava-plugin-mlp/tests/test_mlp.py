"""The mlp connector through the public plugin path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tinyllava.plugins.registry import get_registry


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_depth_and_shapes(depth):
    module = get_registry().create("connector", "mlp", {"depth": depth}).build(24, 40, 9)
    linears = [m for m in module if isinstance(m, nn.Linear)]
    gelus = [m for m in module if isinstance(m, nn.GELU)]
    assert len(linears) == depth and len(gelus) == depth - 1
    assert (linears[0].in_features, linears[-1].out_features) == (24, 40)
    assert module(torch.randn(2, 9, 24)).shape == (2, 9, 40)


def test_tinyllava_factory_key_names():
    """mlp2x_gelu keys are 0.* and 2.* (Linear, GELU, Linear), so its weights map one to one."""
    module = get_registry().create("connector", "mlp", {"depth": 2}).build(8, 16, 4)
    assert sorted(module.state_dict()) == ["0.bias", "0.weight", "2.bias", "2.weight"]


def test_depth_must_be_positive():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        get_registry().component_class("connector", "mlp").Options.model_validate({"depth": 0})


from tinyllava.testing.conformance import ConnectorConformance  # noqa: E402


class TestMLPConformance(ConnectorConformance):
    name = "mlp"
    options = {"depth": 2}


def build(position_embedding: object, num_tokens: int = 4) -> object:
    options = {"depth": 2, "position_embedding": position_embedding}
    return get_registry().create("connector", "mlp", options).build(8, 16, num_tokens)


def test_flat_position_embedding_tells_tokens_apart():
    module = build("flat")
    out = module(torch.ones(1, 4, 8))  # identical features at every position
    assert out.shape == (1, 4, 16)
    assert not torch.allclose(out[0, 0], out[0, 1])
    assert sorted(module.state_dict()) == ["mlp.0.bias", "mlp.0.weight", "mlp.2.bias", "mlp.2.weight", "position"]
    with pytest.raises(ValueError, match="built for 4 image tokens"):
        module(torch.ones(1, 5, 8))


def test_grid_position_is_a_row_plus_a_column():
    """Row by row: moving one column right changes a token by the same vector in every row."""
    module = build("grid", num_tokens=9)
    out = module(torch.ones(1, 9, 8))[0]
    assert sorted(module.state_dict()) == ["columns", "mlp.0.bias", "mlp.0.weight", "mlp.2.bias", "mlp.2.weight",
                                           "rows"]
    assert torch.allclose(out[1] - out[0], out[4] - out[3], atol=1e-6)
    assert torch.allclose(out[1] - out[0], out[7] - out[6], atol=1e-6)
    assert torch.allclose(out[3] - out[0], out[5] - out[2], atol=1e-6)  # one row down, any column
    assert not torch.allclose(out[1], out[3])  # the row and column vectors differ
    with pytest.raises(ValueError, match="built for 9 image tokens"):
        module(torch.ones(1, 4, 8))


def test_grid_needs_a_square_grid():
    with pytest.raises(ValueError, match="square grid of image tokens.*17.*cls_patch"):
        build("grid", num_tokens=17)


@pytest.mark.parametrize(("given", "meant"), [(True, "flat"), (False, "none")])
def test_booleans_from_earlier_specs_still_read(given, meant):
    options = get_registry().component_class("connector", "mlp").Options.model_validate({"position_embedding": given})
    assert options.position_embedding == meant


def test_unknown_position_embedding_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="flat"):
        get_registry().component_class("connector", "mlp").Options.model_validate({"position_embedding": "2d"})


class TestMLPWithPositionsConformance(ConnectorConformance):
    name = "mlp"
    options = {"depth": 2, "position_embedding": "flat"}


class TestMLPWithGridConformance(ConnectorConformance):
    name = "mlp"
    options = {"depth": 2, "position_embedding": "grid"}
