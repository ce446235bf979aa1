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


def test_position_embedding_tells_tokens_apart():
    module = get_registry().create("connector", "mlp", {"depth": 2, "position_embedding": True}).build(8, 16, 4)
    same = torch.ones(1, 4, 8)  # identical features at every position
    out = module(same)
    assert out.shape == (1, 4, 16)
    assert not torch.allclose(out[0, 0], out[0, 1])
    assert sorted(module.state_dict()) == ["mlp.0.bias", "mlp.0.weight", "mlp.2.bias", "mlp.2.weight", "position"]
    with pytest.raises(ValueError, match="built for 4 image tokens"):
        module(torch.ones(1, 5, 8))


class TestMLPWithPositionsConformance(ConnectorConformance):
    name = "mlp"
    options = {"depth": 2, "position_embedding": True}
