"""The share recipe through the public plugin path: three stages, the LLM unfrozen in caption pretraining."""

from __future__ import annotations

import copy

import pytest

from tinyllava.model.build import build_fresh
from tinyllava.plugins.registry import get_registry
from tinyllava.spec import resolve_spec
from tinyllava.spec.runspec import ModelSpec, StageSpec
from tinyllava.testing import TINY_MODEL
from tinyllava.testing.conformance import RecipeConformance


def test_three_stages_as_in_the_paper():
    stages = [StageSpec.model_validate(s) for s in get_registry().create("recipe", "share", {}).default_stages()]
    assert [s.name for s in stages] == ["pretrain", "share_pretrain", "finetune"]
    pre, share, fine = stages
    assert (pre.tune.llm, pre.tune.connector, pre.lr) == ("frozen", "full", 1e-3)
    assert (share.tune.llm, share.tune.vision_tower, share.lr) == ("full", "frozen", 2e-5)
    assert share.chat_template.name == "pretrain" and fine.chat_template is None
    assert (fine.tune.llm, fine.lr) == ("full", 2e-5)
    assert [s.batch_size * s.grad_accum for s in stages] == [256, 256, 128]


def test_data_options_and_partial_vision(tmp_path):
    raw = {"model": copy.deepcopy(TINY_MODEL), "output_dir": str(tmp_path),
           "recipe": {"name": "share", "share_pretrain_data": {"json_path": "caps.json", "image_root": "img"},
                      "vision_from_layer": 1}}
    spec = resolve_spec(raw)
    share = spec.stages[1]
    assert str(share.data.json_path) == "caps.json"
    assert share.tune.vision_tower.mode == "partial" and share.tune.vision_tower.from_layer == 1


def test_partial_trains_the_top_blocks_only():
    model = build_fresh(get_registry(), ModelSpec.model_validate(copy.deepcopy(TINY_MODEL))).model
    recipe = get_registry().create("recipe", "share", {})
    stage = StageSpec.model_validate({"name": "s", "tune": {
        "llm": {"mode": "partial", "from_layer": 1}, "vision_tower": "frozen", "connector": "full"}})
    recipe.prepare(model, stage)
    trained = {n for n, p in model.language_model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith("model.layers.1.") for n in trained)
    with pytest.raises(ValueError, match="not supported by this recipe"):
        recipe.prepare(model, StageSpec.model_validate({"name": "s", "tune": {"llm": "lora"}}))


def test_default_stages_use_only_modes_the_recipe_accepts():
    recipe = get_registry().create("recipe", "share", {})
    for raw in recipe.default_stages():
        assert recipe.check_stage(StageSpec.model_validate(raw)) == []


class TestConformance(RecipeConformance):
    kind = "recipe"
    name = "share"
