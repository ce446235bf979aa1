"""The siglip tower through the public plugin path: token counts, the 728-token quirk, layers, reload."""

from __future__ import annotations

import pytest
import torch

from tinyllava.plugins.registry import get_registry
from tinyllava.testing.conformance import (
    VisionTowerConformance,
    check_options_refused,
    check_pretrained_tower_folder,
    check_source_refused,
    heavy_imports_after,
)

CONFIG = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
          "image_size": 32, "patch_size": 8}


def tower(**options):
    return get_registry().create("vision_tower", "siglip", {"config": CONFIG, **options})


@pytest.mark.parametrize(("strategy", "drop_first", "tokens"), [
    ("patch", False, 16),  # no CLS token: patch keeps every patch
    ("patch", True, 15),  # TinyLLaVA Factory's quirk (729 -> 728 for so400m-patch14-384)
    ("cls_patch", False, 16),
    ("cls_patch", True, 16),  # the quirk only touches `patch`
    ("full", False, 16),
])
def test_token_counts(strategy, drop_first, tokens):
    encoder, processor = tower(feature_strategy=strategy, drop_first_patch=drop_first).build()
    assert encoder.num_tokens == tokens
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, tokens, 32)
    assert (processor.size.height, processor.size.width) == (32, 32)


def test_drop_first_patch_drops_exactly_the_first_real_patch():
    torch.manual_seed(0)
    keep, _ = tower().build()
    drop, _ = tower(drop_first_patch=True).build()
    drop.load_state_dict(keep.state_dict())
    pixels = torch.randn(1, 3, 32, 32)
    assert torch.equal(drop(pixels), keep(pixels)[:, 1:])


def test_feature_layer_selects_hidden_state_and_drops_unused_layers():
    torch.manual_seed(0)
    full, _ = tower(feature_layer=-1).build()
    pixels = torch.randn(1, 3, 32, 32)
    reference = full.model(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert len(reference) == 4 and len(full.model.encoder.layers) == 3
    penultimate, _ = tower().build()  # default feature_layer -2
    assert len(penultimate.model.encoder.layers) == 2
    penultimate.load_state_dict(full.state_dict(), strict=False)
    assert torch.allclose(penultimate(pixels), reference[-2], atol=1e-6)
    assert not torch.allclose(reference[-2], reference[-1], atol=1e-3)
    assert torch.allclose(full(pixels), reference[-1], atol=1e-6)


def test_final_norm_applies_post_layernorm():
    torch.manual_seed(0)
    enc, _ = tower(final_norm=True).build()
    pixels = torch.randn(1, 3, 32, 32)
    raw = enc.model(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
    assert torch.allclose(enc(pixels), enc.model.post_layernorm(raw), atol=1e-6)
    assert not torch.allclose(enc(pixels), raw, atol=1e-3)


def test_pooling_head_is_not_built():
    enc, _ = tower().build()
    assert not any(key.startswith("model.head.") for key in enc.state_dict())
    assert enc.config.vision_use_head is False


def test_pretrained_folder_roundtrip(tmp_path):
    _, _, processor2 = check_pretrained_tower_folder("siglip", {"config": CONFIG, "image_mean": [0.1, 0.2, 0.3]},
                                                     tmp_path)
    assert list(processor2.image_mean) == [0.1, 0.2, 0.3]
    assert type(processor2).__name__ == "SiglipImageProcessorPil"


def test_full_siglip_checkpoint_loads_its_vision_half(tmp_path):
    """Hub SigLIP checkpoints are full image-text models; the tower takes the vision model out of them."""
    from transformers import SiglipConfig, SiglipModel

    torch.manual_seed(0)
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "vocab_size": 64, "max_position_embeddings": 16}
    full = SiglipModel(SiglipConfig(text_config=text, vision_config=CONFIG)).eval()
    full.save_pretrained(tmp_path)
    tower(image_mean=[0.5, 0.5, 0.5]).build()[1].save_pretrained(tmp_path)
    options = {"source": str(tmp_path), "feature_layer": -1}
    enc, _ = get_registry().create("vision_tower", "siglip", options).build()
    pixels = torch.randn(1, 3, 32, 32)
    expected = full.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
    assert torch.allclose(enc(pixels), expected, atol=1e-6)


def test_naflex_checkpoint_is_refused_with_the_right_tower_named(tmp_path):
    from transformers import Siglip2VisionConfig, Siglip2VisionModel

    config = Siglip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_patches=16, patch_size=8)
    check_source_refused("vision_tower", "siglip", Siglip2VisionModel(config), tmp_path, "siglip2")


def test_component_module_is_import_light():
    """Listing, validating and schema generation load the tower module; that must not load torch."""
    assert heavy_imports_after("import tinyllava_plugin_siglip.tower as t\n"
                               "t.SiglipTower.Options.model_json_schema()\n"
                               "t.Siglip2Tower.Options.model_validate({'config': {}})") == []


def test_options_validation():
    cls = check_options_refused("vision_tower", "siglip", [
        ({"drop_first_patch": True}, "exactly one of"),
        ({"config": {}, "feature_strategy": "middle"}, None),
        ({"source": "google/siglip-so400m-patch14-384", "image_mean": [0.1] * 3}, "`config` only"),
    ])
    assert cls.model_validate({"config": {}}).drop_first_patch is False


class TestSiglipConformance(VisionTowerConformance):
    name = "siglip"
    options = {"config": {**CONFIG, "num_hidden_layers": 2}}
    image_size = 32


class TestSiglipQuirkConformance(VisionTowerConformance):
    name = "siglip"
    options = {"config": {**CONFIG, "num_hidden_layers": 2}, "drop_first_patch": True}
    image_size = 32
