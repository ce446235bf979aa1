"""The resampler connector through the public plugin path (tiny geometry, CPU)."""

from __future__ import annotations

import math

import torch
from torch import nn

from tinyllava.plugins.registry import get_registry
from tinyllava.testing.conformance import QueryConnectorConformance

TINY = {"num_queries": 5, "depth": 2, "num_heads": 2, "head_dim": 8}


def build(vision_dim: int = 24, llm_dim: int = 40, tokens: int = 16, **overrides) -> nn.Module:
    options = {**TINY, **overrides}
    return get_registry().create("connector", "resampler", options).build(vision_dim, llm_dim, tokens)


def test_structure_follows_the_options():
    module = build(depth=3, num_heads=4, head_dim=6, ff_mult=2)
    assert (module.proj.in_features, module.proj.out_features) == (24, 40)
    assert module.latents.shape == (5, 40)
    assert len(module.layers) == 3
    attention, feed_forward = module.layers[0]
    assert attention.to_q.out_features == 4 * 6 and attention.to_kv.out_features == 2 * 4 * 6
    assert attention.to_q.bias is None and attention.to_kv.bias is None and attention.to_out.bias is None
    assert feed_forward[1].out_features == 2 * 40
    assert isinstance(module.norm, nn.LayerNorm) and module.norm.normalized_shape == (40,)


def test_attention_keys_and_values_cover_media_and_latents():
    """One PerceiverAttention block against a hand-written softmax attention over concat(media, latents)."""
    torch.manual_seed(0)
    attention = build(num_heads=2, head_dim=8).layers[0][0]
    media, latents = torch.randn(2, 6, 40), torch.randn(2, 3, 40)
    m, lat = attention.norm_media(media), attention.norm_latents(latents)
    q = lat @ attention.to_q.weight.T
    k, v = (torch.cat([m, lat], dim=1) @ attention.to_kv.weight.T).chunk(2, dim=-1)
    heads = []
    for h in range(2):
        s = slice(8 * h, 8 * (h + 1))
        weights = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(8), dim=-1)
        assert weights.shape == (2, 3, 6 + 3)
        heads.append(weights @ v[..., s])
    expected = torch.cat(heads, dim=-1) @ attention.to_out.weight.T
    assert torch.allclose(attention(media, latents), expected, atol=1e-5)


def test_defaults_are_tinyllava_factory_geometry():
    options = get_registry().create("connector", "resampler", {}).options
    assert (options.num_queries, options.depth, options.num_heads, options.head_dim) == (128, 3, 8, 64)


class TestResamplerConformance(QueryConnectorConformance):
    name = "resampler"
    options = TINY
    expected_tokens = 5
    other_queries = 7
    trained_parameters = ("latents", "proj.weight")
    bad_options = [{"num_queries": 0}, {"depth": 0}, {"num_heads": 0}, {"latents": 4}]
