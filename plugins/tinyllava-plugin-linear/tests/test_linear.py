"""The linear and identity connectors through the public plugin path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tinyllava.plugins.registry import get_registry
from tinyllava.testing.conformance import ConnectorConformance


def build(name: str, options: dict, vision_dim: int, llm_dim: int, tokens: int = 9) -> nn.Module:
    return get_registry().create("connector", name, options).build(vision_dim, llm_dim, tokens)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_is_one_projection(bias):
    module = build("linear", {"bias": bias}, 24, 40)
    assert isinstance(module, nn.Linear)
    assert (module.in_features, module.out_features) == (24, 40)
    assert (module.bias is not None) == bias
    x = torch.randn(2, 9, 24)
    expected = x @ module.weight.T + (module.bias if bias else 0)
    assert torch.allclose(module(x), expected, atol=1e-6)


def test_linear_key_names_match_tinyllava_factory():
    """The original's LinearConnector keys (after `_connector.`) are `weight` and `bias`."""
    assert sorted(build("linear", {}, 8, 16).state_dict()) == ["bias", "weight"]


def test_identity_returns_its_input():
    module = build("identity", {}, 32, 32)
    x = torch.randn(2, 9, 32)
    assert torch.equal(module(x), x)
    assert list(module.parameters()) == []


def test_identity_refuses_a_width_mismatch():
    with pytest.raises(ValueError, match=r"identity.*24.*40.*linear"):
        build("identity", {}, 24, 40)


def test_identity_takes_no_options():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        get_registry().create("connector", "identity", {"bias": True})


class TestLinearConformance(ConnectorConformance):
    name = "linear"
    options = {"bias": True}


class TestIdentityConformance(ConnectorConformance):
    name = "identity"
    options = {}
    vision_dim = 32
    llm_dim = 32
