"""The pixel_shuffle and ldp connectors through the public plugin path."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from tinyllava.plugins.registry import get_registry
from tinyllava.testing.conformance import ConnectorConformance


def build(name: str, options: dict, vision_dim: int = 24, llm_dim: int = 40, tokens: int = 16) -> nn.Module:
    return get_registry().create("connector", name, options).build(vision_dim, llm_dim, tokens)


def coordinate_grid(side: int) -> torch.Tensor:
    """(1, side*side, 2): token (r, c) in row-major order carries the features [r, c]."""
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return torch.stack([rows, cols], dim=-1).reshape(1, side * side, 2).float()


# -- pixel_shuffle ----------------------------------------------------------------------------------


def test_pixel_shuffle_rearranges_blocks_exactly():
    """With an identity MLP, output token (i, j) is the f x f block at rows 2i.., cols 2j.., in (di, dj) order."""
    module = build("pixel_shuffle", {"factor": 2, "depth": 1}, vision_dim=2, llm_dim=8, tokens=16)
    with torch.no_grad():
        module.mlp[0].weight.copy_(torch.eye(8))
        module.mlp[0].bias.zero_()
        out = module(coordinate_grid(4))
    assert out.shape == (1, 4, 8)
    expected = torch.tensor(
        [
            [0, 0, 0, 1, 1, 0, 1, 1],  # token (0, 0): inputs (0,0) (0,1) (1,0) (1,1)
            [0, 2, 0, 3, 1, 2, 1, 3],  # token (0, 1)
            [2, 0, 2, 1, 3, 0, 3, 1],  # token (1, 0)
            [2, 2, 2, 3, 3, 2, 3, 3],  # token (1, 1)
        ],
        dtype=torch.float,
    )
    assert torch.equal(out[0], expected)


@pytest.mark.parametrize(("factor", "tokens", "expected"), [(1, 16, 16), (2, 36, 9), (3, 36, 4), (4, 16, 1)])
def test_pixel_shuffle_token_count_and_widths(factor, tokens, expected):
    module = build("pixel_shuffle", {"factor": factor, "depth": 2}, tokens=tokens)
    linears = [m for m in module.mlp if isinstance(m, nn.Linear)]
    assert (linears[0].in_features, linears[-1].out_features) == (24 * factor * factor, 40)
    assert module(torch.randn(2, tokens, 24)).shape == (2, expected, 40)


def test_pixel_shuffle_layer_norm_option():
    assert isinstance(build("pixel_shuffle", {"layer_norm": True}).norm, nn.LayerNorm)
    assert isinstance(build("pixel_shuffle", {"layer_norm": False}).norm, nn.Identity)


# -- ldp ---------------------------------------------------------------------------------------------


def block_mean(y: torch.Tensor, side: int, factor: int) -> torch.Tensor:
    """Average over each factor x factor block of a row-major (B, side*side, D) grid, by plain indexing."""
    g = side // factor
    cells = []
    for i in range(g):
        for j in range(g):
            idx = [(i * factor + di) * side + j * factor + dj for di in range(factor) for dj in range(factor)]
            cells.append(y[:, idx].mean(dim=1))
    return torch.stack(cells, dim=1)


@pytest.mark.parametrize("pool", ["avg", "conv"])
def test_ldp_pools_the_mlp_output_by_blocks(pool):
    """Without PEG, avg pooling (and conv pooling at init) is the block mean of the per-token MLP."""
    torch.manual_seed(0)
    module = build("ldp", {"factor": 3, "pool": pool, "peg": False}, tokens=36)
    x = torch.randn(2, 36, 24)
    with torch.no_grad():
        out = module(x)
        expected = block_mean(module.mlp(x), side=6, factor=3)
    assert out.shape == (2, 4, 40)
    assert torch.allclose(out, expected, atol=1e-5)


def test_ldp_conv_pool_is_depthwise_and_learns():
    module = build("ldp", {"factor": 2, "pool": "conv"})
    assert module.pool.groups == 40 and module.pool.stride == (2, 2)
    module(torch.randn(2, 16, 24)).square().mean().backward()
    assert module.pool.weight.grad is not None and module.pool.weight.grad.abs().sum() > 0
    assert module.mlp[0].weight.grad.abs().sum() > 0


def test_ldp_peg_is_a_residual():
    torch.manual_seed(0)
    with_peg = build("ldp", {"pool": "avg", "peg": True})
    without = build("ldp", {"pool": "avg", "peg": False})
    without.load_state_dict(with_peg.state_dict(), strict=False)
    x = torch.randn(1, 16, 24)
    with torch.no_grad():
        assert not torch.allclose(with_peg(x), without(x))
        with_peg.peg.weight.zero_()
        with_peg.peg.bias.zero_()
        assert torch.allclose(with_peg(x), without(x))
    assert with_peg.peg.groups == 40


# -- the grid check ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pixel_shuffle", "ldp"])
def test_non_square_token_count_is_a_clear_error(name):
    with pytest.raises(ValueError, match=r"square grid.*17 tokens.*CLS"):
        build(name, {"factor": 2}, tokens=17)


@pytest.mark.parametrize("name", ["pixel_shuffle", "ldp"])
def test_grid_side_not_divisible_is_a_clear_error(name):
    with pytest.raises(ValueError, match=r"factor=4.*6x6 grid.*divides 6"):
        build(name, {"factor": 4}, tokens=36)


@pytest.mark.parametrize("name", ["pixel_shuffle", "ldp"])
def test_forward_checks_the_grid_too(name):
    module = build(name, {"factor": 2}, tokens=16)
    with pytest.raises(ValueError, match="square grid"):
        module(torch.randn(1, 15, 24))


@pytest.mark.parametrize(
    ("name", "bad"), [("pixel_shuffle", {"factor": 0}), ("pixel_shuffle", {"depth": 0}), ("ldp", {"pool": "max"})]
)
def test_bad_options_are_rejected(name, bad):
    with pytest.raises(ValidationError):
        get_registry().create("connector", name, bad)


# -- the contract ------------------------------------------------------------------------------------


class TestPixelShuffleConformance(ConnectorConformance):
    name = "pixel_shuffle"
    options = {"factor": 2, "depth": 2, "layer_norm": True}
    expected_tokens = 4


class TestLDPConvConformance(ConnectorConformance):
    name = "ldp"
    options = {"factor": 2, "pool": "conv", "peg": True}
    expected_tokens = 4


class TestLDPAvgConformance(ConnectorConformance):
    name = "ldp"
    options = {"factor": 3, "pool": "avg", "peg": True}
    num_tokens = 36
    expected_tokens = 4
