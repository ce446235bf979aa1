"""The mof tower and mof_mlp connector through the public plugin path, on real tensors."""

from __future__ import annotations

import pytest
import torch

from tinyllava.plugins.registry import get_registry
from tinyllava.testing import save_and_reload_tiny
from tinyllava.testing.conformance import ConnectorConformance, VisionTowerConformance, heavy_imports_after

CLIP = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "image_size": 32, "patch_size": 8}
DINOV2 = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
          "image_size": 32, "patch_size": 8}
MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]


def options(**extra):
    clip = {"config": CLIP, "image_mean": MEAN, "image_std": STD}
    return {"clip": clip, "dinov2": {"config": DINOV2}, **extra}


def tower(**extra):
    return get_registry().create("vision_tower", "mof", options(**extra))


def hidden(model, pixels):
    """The last hidden state of a tower as built: its layers after the selected one are removed."""
    return model(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]


@pytest.mark.parametrize(("strategy", "tokens"), [("patch", 32), ("cls_patch", 34), ("full", 34)])
def test_token_counts(strategy, tokens):
    """Twice the per-tower count: CLIP-L/14 + DINOv2-L at 224 give 256 + 256 = 512."""
    encoder, processor = tower(feature_strategy=strategy).build()
    assert encoder.num_tokens == tokens
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, tokens, 32)
    assert type(processor).__name__ == "CLIPImageProcessorPil"
    assert list(processor.image_mean) == MEAN


def test_tokens_interleave_clip_then_dinov2_of_the_same_pixels():
    torch.manual_seed(0)
    encoder, _ = tower().build()
    pixels = torch.randn(2, 3, 32, 32)
    out = encoder(pixels)
    # each tower's penultimate layer (2 layers, so 1 is kept), CLS dropped; DINOv2 gets the same pixels
    assert len(encoder.clip.model.encoder.layers) == 1 and len(encoder.dinov2.model.encoder.layer) == 1
    clip = hidden(encoder.clip.model, pixels)[:, 1:]
    dino = hidden(encoder.dinov2.model, pixels)[:, 1:]
    assert not torch.allclose(clip, dino, atol=1e-3)
    assert torch.allclose(out[:, 0], clip[:, 0], atol=1e-6)
    assert torch.allclose(out[:, 1], dino[:, 0], atol=1e-6)
    assert torch.allclose(out[:, 2], clip[:, 1], atol=1e-6)
    assert torch.allclose(out[:, 0::2], clip, atol=1e-6)
    assert torch.allclose(out[:, 1::2], dino, atol=1e-6)


def test_renormalize_dinov2_gives_dinov2_imagenet_statistics():
    torch.manual_seed(0)
    plain, _ = tower().build()
    renorm, _ = tower(renormalize_dinov2=True).build()
    renorm.load_state_dict(plain.state_dict())
    pixels = torch.randn(1, 3, 32, 32)
    raw = pixels * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    imagenet = (raw - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = renorm(pixels)
    assert torch.allclose(out[:, 1::2], renorm.dinov2(imagenet), atol=1e-5)
    assert torch.allclose(out[:, 0::2], plain(pixels)[:, 0::2], atol=1e-6)  # CLIP is untouched
    assert not torch.allclose(out[:, 1::2], plain(pixels)[:, 1::2], atol=1e-3)


def test_towers_must_share_width_and_token_count():
    with pytest.raises(ValueError, match="same width"):
        get_registry().create("vision_tower", "mof", {
            "clip": {"config": CLIP}, "dinov2": {"config": {**DINOV2, "hidden_size": 48}}}).build()
    with pytest.raises(ValueError, match="same patch size"):
        get_registry().create("vision_tower", "mof", {
            "clip": {"config": CLIP}, "dinov2": {"config": {**DINOV2, "patch_size": 16}}}).build()


def test_register_tokens_are_dropped_before_interleaving():
    encoder, _ = get_registry().create("vision_tower", "mof", {
        "clip": {"config": CLIP}, "dinov2": {"config": {**DINOV2, "num_register_tokens": 4}}}).build()
    assert encoder.num_tokens == 32
    assert encoder(torch.randn(1, 3, 32, 32)).shape == (1, 32, 32)


def test_pretrained_folders_roundtrip(tmp_path):
    encoder, processor = tower().build()
    encoder.clip.model.save_pretrained(tmp_path / "clip")
    processor.save_pretrained(tmp_path / "clip")
    encoder.dinov2.model.save_pretrained(tmp_path / "dinov2")  # no processor needed: CLIP's prepares pixels
    loaded, processor2 = get_registry().create("vision_tower", "mof", {
        "clip": {"source": str(tmp_path / "clip")}, "dinov2": {"source": str(tmp_path / "dinov2")}}).build()
    pixels = torch.randn(1, 3, 32, 32)
    assert torch.allclose(encoder(pixels), loaded(pixels), atol=1e-6)
    assert list(processor2.image_mean) == MEAN


def test_from_config_needs_both_sub_configs():
    encoder, processor = tower().build()
    config = encoder.config.to_dict()
    assert set(config) == {"model_type", "clip", "dinov2"}
    with pytest.raises(ValueError, match="`clip` and `dinov2`"):
        tower().from_config(config["clip"], processor)


def test_options_validation():
    from pydantic import ValidationError

    cls = get_registry().component_class("vision_tower", "mof")
    with pytest.raises(ValidationError, match="mof level"):
        cls.Options.model_validate({**options(), "clip": {"config": CLIP, "feature_layer": -1}})
    with pytest.raises(ValidationError, match="clip processor"):
        cls.Options.model_validate({**options(), "dinov2": {"config": DINOV2, "image_mean": MEAN}})
    with pytest.raises(ValidationError, match="srouce"):  # a typo inside a sub-tower's options
        cls.Options.model_validate({**options(), "clip": {"srouce": "openai/clip-vit-large-patch14"}})
    with pytest.raises(ValidationError, match="exactly one of"):
        cls.Options.model_validate({**options(), "dinov2": {}})
    with pytest.raises(ValidationError, match="dinov2"):
        cls.Options.model_validate({"clip": {"config": CLIP}})


def test_connector_projects_each_tower_with_its_own_mlp():
    torch.manual_seed(0)
    module = get_registry().create("connector", "mof_mlp", {}).build(32, 40, 16)
    feats = torch.randn(2, 16, 32)
    out = module(feats)
    assert out.shape == (2, 16, 40)
    assert torch.allclose(out[:, 0::2], module.clip(feats[:, 0::2]), atol=1e-6)
    assert torch.allclose(out[:, 1::2], module.dinov2(feats[:, 1::2]), atol=1e-6)
    assert not torch.allclose(module.clip(feats), module.dinov2(feats), atol=1e-3)  # independent MLPs
    with pytest.raises(ValueError, match="even"):
        module(torch.randn(1, 15, 32))


def test_connector_matches_tinyllava_factory_key_names():
    """MoFMLPConnector: two Linear-GELU-Linear MLPs named clip and dinov2, so its weights map one to one."""
    module = get_registry().create("connector", "mof_mlp", {}).build(8, 16, 4)
    assert sorted(module.state_dict()) == [f"{tower}.{i}.{p}" for tower in ("clip", "dinov2") for i in (0, 2)
                                           for p in ("bias", "weight")]
    assert isinstance(module.clip[1], torch.nn.GELU)
    assert sum(isinstance(m, torch.nn.Linear) for m in
               get_registry().create("connector", "mof_mlp", {"depth": 3}).build(8, 16, 4).clip) == 3


def test_connector_refuses_an_odd_token_count():
    with pytest.raises(ValueError, match="even"):
        get_registry().create("connector", "mof_mlp", {}).build(32, 40, 15)


def test_tower_and_connector_in_a_saved_and_reloaded_model(tmp_path):
    """Through the core: build, save a checkpoint, load it offline; features and projections agree."""
    built, loaded = save_and_reload_tiny(tmp_path, vision_tower={"name": "mof", **options()},
                                         connector={"name": "mof_mlp"})
    assert built.model.config.num_vision_tokens == 32 and built.model.config.image_seq_len == 32
    pixels = torch.randn(1, 3, 32, 32)
    model, again = built.model.eval(), loaded.model
    with torch.no_grad():
        assert torch.allclose(again.connector(again.vision_tower(pixels)),
                              model.connector(model.vision_tower(pixels)), atol=1e-6)


def test_component_modules_are_import_light():
    code = ("import tinyllava_plugin_mof.tower as t, tinyllava_plugin_mof.connector as c\n"
            "t.MoFTower.Options.model_json_schema(); c.MoFMLPConnector.Options.model_json_schema()")
    assert heavy_imports_after(code) == []


class TestMoFConformance(VisionTowerConformance):
    name = "mof"
    options = {"clip": {"config": CLIP}, "dinov2": {"config": DINOV2}}
    image_size = 32


class TestMoFMLPConformance(ConnectorConformance):
    name = "mof_mlp"
    options = {"depth": 2}
