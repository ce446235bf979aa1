"""The clip tower through the public plugin path: shapes, feature selection, layer truncation, reload."""

from __future__ import annotations

import pytest
import torch

from tinyllava.plugins.registry import get_registry
from tinyllava.testing.conformance import VisionTowerConformance, check_options_refused, check_pretrained_tower_folder

CONFIG = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
          "image_size": 32, "patch_size": 8}


def tower(**options):
    return get_registry().create("vision_tower", "clip", {"config": CONFIG, **options})


@pytest.mark.parametrize(("strategy", "tokens"), [("patch", 16), ("cls_patch", 17), ("full", 17)])
def test_feature_strategies(strategy, tokens):
    encoder, processor = tower(feature_strategy=strategy).build()
    assert encoder.num_tokens == tokens
    pixels = torch.randn(2, 3, 32, 32)
    assert encoder(pixels).shape == (2, tokens, 32)
    assert processor.crop_size == {"height": 32, "width": 32}


def test_feature_layer_selects_hidden_state_and_drops_unused_layers():
    torch.manual_seed(0)
    full, _ = tower(feature_layer=-1, feature_strategy="cls_patch").build()
    pixels = torch.randn(1, 3, 32, 32)
    reference = full.model(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert len(full.model.encoder.layers) == 3
    penultimate, _ = tower(feature_layer=-2, feature_strategy="cls_patch").build()
    assert len(penultimate.model.encoder.layers) == 2  # the last layer is never built into the graph
    penultimate.load_state_dict(full.state_dict(), strict=False)
    assert torch.allclose(penultimate(pixels), reference[-2], atol=1e-6)
    assert torch.allclose(full(pixels), reference[-1], atol=1e-6)


def test_feature_layer_zero_is_the_embeddings_with_no_layer_built():
    torch.manual_seed(0)
    full, _ = tower(feature_layer=-1, feature_strategy="patch").build()
    pixels = torch.randn(2, 3, 32, 32)
    embeddings = full.model(pixel_values=pixels, output_hidden_states=True).hidden_states[0]
    zero, _ = tower(feature_layer=0, feature_strategy="patch").build()
    assert len(zero.model.encoder.layers) == 0
    zero.load_state_dict(full.state_dict(), strict=False)
    assert torch.allclose(zero(pixels), embeddings[:, 1:], atol=1e-6)
    assert torch.allclose(zero(pixels[:1]), embeddings[:1, 1:], atol=1e-6)  # nothing kept from the last call


def test_final_norm_applies_post_layernorm():
    torch.manual_seed(0)
    enc, _ = tower(feature_layer=-1, feature_strategy="cls_patch", final_norm=True).build()
    pixels = torch.randn(1, 3, 32, 32)
    raw = enc.model(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
    assert torch.allclose(enc(pixels), enc.model.post_layernorm(raw), atol=1e-6)


def test_from_config_rebuilds_the_same_architecture():
    enc, processor = tower().build()
    again = tower().from_config(enc.config.to_dict(), processor)
    assert again.state_dict().keys() == enc.state_dict().keys()
    assert again.num_tokens == enc.num_tokens


def test_pretrained_folder_roundtrip(tmp_path):
    check_pretrained_tower_folder("clip", {"config": CONFIG}, tmp_path)


def test_options_validation():
    check_options_refused("vision_tower", "clip", [
        ({}, "exactly one of"),
        ({"config": {}, "feature_strategy": "middle"}, None),
    ])


class TestCLIPConformance(VisionTowerConformance):
    name = "clip"
    options = {"config": CONFIG, "image_mean": [0.0, 0.0, 0.0], "image_std": [0.5, 0.5, 0.5]}
    image_size = 32
