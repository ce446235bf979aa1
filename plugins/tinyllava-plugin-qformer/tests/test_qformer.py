"""The qformer connector through the public plugin path (tiny geometry, CPU)."""

from __future__ import annotations

import re

import pytest

from tinyllava.plugins.registry import get_registry
from tinyllava.testing.conformance import QueryConnectorConformance

TINY = {"num_queries": 6, "num_layers": 2, "hidden_size": 32, "num_heads": 4, "dropout": 0.0}


def build(vision_dim: int = 24, llm_dim: int = 40, tokens: int = 16, **overrides):
    options = {**TINY, **overrides}
    return get_registry().create("connector", "qformer", options).build(vision_dim, llm_dim, tokens)


@pytest.mark.parametrize(("layers", "frequency", "crossing"), [(4, 2, [0, 2]), (3, 1, [0, 1, 2]), (2, 5, [0])])
def test_cross_attention_frequency(layers, frequency, crossing):
    module = build(num_layers=layers, cross_attention_frequency=frequency)
    blocks = module.qformer.encoder.layer
    assert len(blocks) == layers
    assert [i for i, b in enumerate(blocks) if b.has_cross_attention] == crossing
    assert module.qformer.encoder.layer[0].crossattention.attention.key.in_features == 24


def test_geometry_follows_the_options():
    module = build(hidden_size=48, num_heads=6, num_queries=3)
    assert module.query_tokens.shape == (1, 3, 48)
    assert module.qformer.encoder.layer[0].intermediate_query.dense.out_features == 4 * 48
    assert (module.projector.in_features, module.projector.out_features) == (48, 40)
    assert build(intermediate_size=20).qformer.encoder.layer[0].intermediate_query.dense.out_features == 20


def test_no_text_feed_forward_weights():
    """Only queries go through the Q-Former, so the text branch's FFN would be dead weight."""
    names = list(build().state_dict())
    assert any(re.search(r"layer\.\d+\.intermediate_query\.", n) for n in names)
    assert not [n for n in names if re.search(r"layer\.\d+\.(intermediate|output)\.", n)]


def test_queries_start_small():
    module = build(num_queries=64, hidden_size=64, num_heads=4)
    assert 0.01 < module.query_tokens.std().item() < 0.03


def test_defaults_are_tinyllava_factory_geometry():
    options = get_registry().create("connector", "qformer", {}).options
    assert (options.num_queries, options.num_layers, options.hidden_size, options.num_heads) == (128, 12, 768, 12)
    assert options.cross_attention_frequency == 2


class TestQFormerConformance(QueryConnectorConformance):
    name = "qformer"
    options = TINY
    expected_tokens = 6
    other_queries = 5
    trained_parameters = ("query_tokens", "qformer.encoder.layer.0.crossattention.attention.key.weight")
    bad_options = [{"hidden_size": 30, "num_heads": 4}, {"num_queries": 0}, {"cross_attention_frequency": 0},
                   {"dropout": 1.0}]
