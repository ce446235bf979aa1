"""The siglip2 (NaFlex) tower: (B, 3, H, W) in, the same features as transformers' own NaFlex pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyllava.plugins.registry import get_registry
from tinyllava.testing import save_and_reload_tiny
from tinyllava.testing.conformance import VisionTowerConformance, check_source_refused

CONFIG = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
          "num_patches": 16, "patch_size": 8}


def tower(**options):
    return get_registry().create("vision_tower", "siglip2", {"config": CONFIG, **options})


@pytest.mark.parametrize(("options", "size", "tokens"), [
    ({}, 32, 16),  # default resolution: the 4x4 position grid times patch 8
    ({"feature_strategy": "cls_patch"}, 32, 16),  # no CLS token: every strategy keeps every patch
    ({"image_size": 48}, 48, 36),  # the model resizes its position grid
])
def test_token_counts_and_resolution(options, size, tokens):
    encoder, processor = tower(**options).build()
    assert encoder.num_tokens == tokens
    assert (processor.size.height, processor.size.width) == (size, size)
    assert encoder(torch.randn(2, 3, size, size)).shape == (2, tokens, 32)


def test_image_size_must_be_a_multiple_of_the_patch():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        tower(image_size=36).build()


def test_patchify_matches_the_transformers_processor_layout():
    from transformers.models.siglip2.image_processing_pil_siglip2 import convert_image_to_patches

    encoder, _ = tower().build()
    image = np.random.default_rng(0).standard_normal((3, 16, 24)).astype(np.float32)
    patches, shapes = encoder.patchify(torch.from_numpy(image)[None])
    assert torch.equal(patches[0], torch.from_numpy(convert_image_to_patches(image, 8)))
    assert shapes.tolist() == [[2, 3]]


def test_features_equal_the_official_naflex_pipeline():
    """Same image and weights: our processor + wrapper == Siglip2ImageProcessorPil + the model's inputs."""
    from PIL import Image
    from transformers import Siglip2ImageProcessorPil

    torch.manual_seed(0)
    encoder, processor = tower(feature_layer=-1).build()
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    naflex = Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16)(images=image, return_tensors="pt")
    assert bool(naflex["pixel_attention_mask"].all())
    expected = encoder.model(**naflex, output_hidden_states=True).hidden_states[-1]
    ours = encoder(processor(images=image, return_tensors="pt")["pixel_values"])
    assert torch.allclose(ours, expected, atol=1e-5)


def test_feature_layer_selects_hidden_state_and_drops_unused_layers():
    torch.manual_seed(0)
    full, _ = tower(feature_layer=-1).build()
    pixels = torch.randn(1, 3, 32, 32)
    patches, shapes = full.patchify(pixels)
    mask = torch.ones(1, 16, dtype=torch.long)
    reference = full.model(pixel_values=patches, pixel_attention_mask=mask, spatial_shapes=shapes,
                           output_hidden_states=True).hidden_states
    assert len(reference) == 4
    penultimate, _ = tower().build()
    assert len(penultimate.model.encoder.layers) == 2
    penultimate.load_state_dict(full.state_dict(), strict=False)
    assert torch.allclose(penultimate(pixels), reference[-2], atol=1e-6)
    assert not torch.allclose(reference[-2], reference[-1], atol=1e-3)
    normed, _ = tower(feature_layer=-1, final_norm=True).build()
    normed.load_state_dict(full.state_dict())
    assert torch.allclose(normed(pixels), full.model.post_layernorm(reference[-1]), atol=1e-6)


def test_pooling_head_is_not_built():
    enc, _ = tower().build()
    assert not any(".head." in key for key in enc.state_dict())


def test_from_config_takes_the_resolution_from_the_saved_processor():
    enc, processor = tower(image_size=48).build()
    again = get_registry().create("vision_tower", "siglip2", {"config": CONFIG}).from_config(
        enc.config.to_dict(), processor
    )
    assert again.num_tokens == 36
    assert again.state_dict().keys() == enc.state_dict().keys()


def test_pretrained_naflex_folder_roundtrip(tmp_path):
    """A NaFlex checkpoint folder (model + Siglip2 processor): normalisation and resample come from it."""
    from transformers import Siglip2ImageProcessorPil

    enc, _ = tower().build()
    enc.model.save_pretrained(tmp_path)
    naflex = Siglip2ImageProcessorPil(image_mean=[0.2, 0.3, 0.4], patch_size=8, max_num_patches=16)
    naflex.save_pretrained(tmp_path)
    loaded, processor = get_registry().create("vision_tower", "siglip2", {"source": str(tmp_path)}).build()
    pixels = torch.randn(1, 3, 32, 32)
    assert torch.allclose(enc(pixels), loaded(pixels), atol=1e-6)
    assert list(processor.image_mean) == [0.2, 0.3, 0.4]
    assert (processor.size.height, processor.size.width) == (32, 32)
    assert int(processor.resample) == 2  # bilinear, as the NaFlex processor


def test_fixed_resolution_checkpoint_is_refused_with_the_right_tower_named(tmp_path):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, image_size=32, patch_size=8)
    check_source_refused("vision_tower", "siglip2", SiglipVisionModel(config), tmp_path, "`siglip` tower")


class TestSiglip2Conformance(VisionTowerConformance):
    name = "siglip2"
    options = {"config": {**CONFIG, "num_hidden_layers": 2}}
    image_size = 32


@pytest.mark.parametrize("tower_spec", [
    {"name": "siglip", "drop_first_patch": True,
     "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                "image_size": 32, "patch_size": 8}},
    {"name": "siglip2", "image_size": 48, "config": CONFIG},
])
def test_saved_and_reloaded_model(tmp_path, tower_spec):
    """Through the core: the checkpoint's image processor and vision config rebuild the same tower."""
    built, loaded = save_and_reload_tiny(tmp_path, vision_tower=tower_spec)
    size = built.image_processor.size.height
    assert loaded.image_processor.size.height == size
    tokens = {32: 15, 48: 36}[size]
    assert loaded.model.vision_tower.num_tokens == built.model.vision_tower.num_tokens == tokens
    pixels = torch.randn(1, 3, size, size)
    with torch.no_grad():
        expected = built.model.eval().vision_tower(pixels)
        assert torch.allclose(loaded.model.vision_tower(pixels), expected, atol=1e-6)
