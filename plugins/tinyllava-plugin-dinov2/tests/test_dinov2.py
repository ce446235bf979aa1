"""The dinov2 tower through the public plugin path: CLS/register handling, layers, resolution, reload."""

from __future__ import annotations

import pytest
import torch

from tinyllava.plugins.registry import get_registry
from tinyllava.testing import save_and_reload_tiny
from tinyllava.testing.conformance import (
    VisionTowerConformance,
    check_options_refused,
    check_pretrained_tower_folder,
    check_source_refused,
    heavy_imports_after,
)

CONFIG = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2,
          "image_size": 32, "patch_size": 8}
REGISTERS = {**CONFIG, "num_register_tokens": 4}


def tower(config=CONFIG, **options):
    return get_registry().create("vision_tower", "dinov2", {"config": config, **options})


def hidden_states(encoder, pixels):
    return encoder.model(pixel_values=pixels, output_hidden_states=True).hidden_states


@pytest.mark.parametrize(("config", "strategy", "tokens"), [
    (CONFIG, "patch", 16),  # CLS dropped
    (CONFIG, "cls_patch", 17),
    (CONFIG, "full", 17),
    (REGISTERS, "patch", 16),  # CLS and the 4 registers dropped
    (REGISTERS, "cls_patch", 17),  # registers are neither CLS nor patches
    (REGISTERS, "full", 21),
])
def test_token_counts(config, strategy, tokens):
    encoder, processor = tower(config, feature_strategy=strategy).build()
    assert encoder.num_tokens == tokens
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, tokens, 32)
    assert (processor.crop_size.height, processor.crop_size.width) == (32, 32)


def test_sequence_layout_is_cls_then_registers_then_patches():
    """The selection relies on this order; registers enter without a position embedding."""
    enc, _ = tower(REGISTERS, feature_layer=-1).build()
    first = hidden_states(enc, torch.randn(1, 3, 32, 32))[0]
    assert first.shape[1] == 21
    assert torch.equal(first[0, 1:5], enc.model.embeddings.register_tokens[0])


@pytest.mark.parametrize("config", [CONFIG, REGISTERS])
def test_strategies_select_the_right_tokens_of_the_right_layer(config):
    torch.manual_seed(0)
    registers = config.get("num_register_tokens", 0)
    full, _ = tower(config, feature_layer=-1, feature_strategy="full").build()
    pixels = torch.randn(1, 3, 32, 32)
    reference = hidden_states(full, pixels)
    assert len(reference) == 4
    penultimate = reference[-2]
    assert not torch.allclose(penultimate, reference[-1], atol=1e-3)
    for strategy, expected in [
        ("patch", penultimate[:, 1 + registers :]),
        ("cls_patch", torch.cat([penultimate[:, :1], penultimate[:, 1 + registers :]], dim=1)),
        ("full", penultimate),
    ]:
        enc, _ = tower(config, feature_strategy=strategy).build()  # default feature_layer -2
        assert len(enc.model.encoder.layer) == 2  # the unused last layer is not built in
        enc.load_state_dict(full.state_dict(), strict=False)
        assert torch.allclose(enc(pixels), expected, atol=1e-6), strategy


def test_final_norm_on_the_last_layer_is_the_models_own_output():
    torch.manual_seed(0)
    enc, _ = tower(feature_layer=-1, feature_strategy="full", final_norm=True).build()
    pixels = torch.randn(1, 3, 32, 32)
    out = enc.model(pixel_values=pixels)
    assert torch.allclose(enc(pixels), out.last_hidden_state, atol=1e-6)
    assert not torch.allclose(enc(pixels), hidden_states(enc, pixels)[-1], atol=1e-3)


def test_token_count_follows_the_processor_not_the_position_grid():
    """Pretrained DINOv2 has a 518px grid but its processor crops 224 (256 tokens at patch 14)."""
    enc, processor = tower({**CONFIG, "image_size": 64}).build()
    assert enc.num_tokens == 64
    small = processor_with_crop(processor, 32)
    again = tower({**CONFIG, "image_size": 64}).from_config(enc.config.to_dict(), small)
    again.load_state_dict(enc.state_dict())
    assert again.num_tokens == 16
    assert again(torch.randn(1, 3, 32, 32)).shape == (1, 16, 32)  # positions are interpolated


def processor_with_crop(processor, size):
    from transformers import BitImageProcessorPil

    return BitImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                image_mean=processor.image_mean, image_std=processor.image_std)


@pytest.mark.parametrize("config", [CONFIG, REGISTERS])
def test_pretrained_folder_roundtrip(tmp_path, config):
    enc, loaded, processor2 = check_pretrained_tower_folder("dinov2", {"config": config, "image_mean": [0.1, 0.2, 0.3]},
                                                            tmp_path)
    assert type(loaded.model) is type(enc.model)
    assert loaded.num_tokens == enc.num_tokens
    assert list(processor2.image_mean) == [0.1, 0.2, 0.3]
    assert type(processor2).__name__ == "BitImageProcessorPil"


def test_from_config_rebuilds_the_register_variant():
    enc, processor = tower(REGISTERS, feature_strategy="full").build()
    again = tower(REGISTERS, feature_strategy="full").from_config(enc.config.to_dict(), processor)
    assert type(again.model).__name__ == "Dinov2WithRegistersModel"
    assert again.state_dict().keys() == enc.state_dict().keys() and again.num_tokens == 21


def test_other_checkpoints_are_refused(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=2, image_size=32, patch_size=8)
    check_source_refused("vision_tower", "dinov2", CLIPVisionModel(config), tmp_path, "not DINOv2")


def test_component_module_is_import_light():
    code = "import tinyllava_plugin_dinov2.tower as t\nt.Dinov2Tower.Options.model_json_schema()"
    assert heavy_imports_after(code) == []


def test_options_validation():
    check_options_refused("vision_tower", "dinov2", [
        ({}, "exactly one of"),
        ({"config": {}, "feature_strategy": "registers"}, None),
        ({"source": "facebook/dinov2-large", "image_std": [0.1] * 3}, "`config` only"),
    ])


class TestDinov2Conformance(VisionTowerConformance):
    name = "dinov2"
    options = {"config": {**CONFIG, "num_hidden_layers": 2}}
    image_size = 32


class TestDinov2RegistersConformance(VisionTowerConformance):
    name = "dinov2"
    options = {"config": {**REGISTERS, "num_hidden_layers": 2}, "feature_strategy": "cls_patch"}
    image_size = 32


def test_saved_and_reloaded_model(tmp_path):
    """Through the core: the checkpoint's processor (crop size) and config rebuild the register variant."""
    built, loaded = save_and_reload_tiny(tmp_path, vision_tower={"name": "dinov2", "config": REGISTERS})
    assert type(loaded.model.vision_tower.model).__name__ == "Dinov2WithRegistersModel"
    assert loaded.model.vision_tower.num_tokens == 16
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = built.model.eval().vision_tower(pixels)
        assert torch.allclose(loaded.model.vision_tower(pixels), expected, atol=1e-6)
