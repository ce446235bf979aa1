"""The custom_finetune recipe: one LoRA stage at the paper's settings, and it needs init_from."""

from __future__ import annotations

import pytest

from tinyllava.plugins.registry import get_registry
from tinyllava.spec import resolve_spec
from tinyllava.spec.runspec import StageSpec
from tinyllava.testing.conformance import RecipeConformance
from tinyllava.training.runner import RunError, check_stages


def test_paper_settings():
    (stage,) = get_registry().create("recipe", "custom_finetune", {}).default_stages()
    stage = StageSpec.model_validate(stage)
    lora = stage.tune.llm.lora
    assert (stage.tune.llm.mode, lora.r, lora.alpha, stage.lr) == ("lora", 128, 256, 1e-4)
    assert (stage.tune.vision_tower, stage.tune.connector) == ("frozen", "full")
    assert stage.batch_size * stage.grad_accum == 128 and stage.resolved_save_format() == "adapters"
    (q,) = get_registry().create("recipe", "custom_finetune", {"qlora": True}).default_stages()
    assert StageSpec.model_validate(q).tune.llm.mode == "qlora"


def test_spec_needs_no_model_section_but_an_init_checkpoint(tmp_path):
    raw = {"init_from": str(tmp_path / "ckpt"), "output_dir": str(tmp_path / "runs"),
           "recipe": {"name": "custom_finetune", "data": {"json_path": "mine.json", "image_root": "img"}}}
    spec = resolve_spec(raw)
    assert spec.model is None and str(spec.stages[0].data.json_path) == "mine.json"
    raw.pop("init_from")
    with pytest.raises(ValueError, match="give `model`"):
        resolve_spec(raw)
    raw["model"] = {"llm": "llama", "vision_tower": "clip", "connector": "mlp", "chat_template": "llama"}
    raw["model"]["llm"] = {"name": "llama", "config": {"hidden_size": 32}}
    raw["model"]["vision_tower"] = {"name": "clip", "config": {"hidden_size": 32}}
    with pytest.raises(RunError, match="set init_from"):
        check_stages(resolve_spec(raw), get_registry())


def test_default_stages_use_only_modes_the_recipe_accepts():
    recipe = get_registry().create("recipe", "custom_finetune", {})
    for raw in recipe.default_stages():
        assert recipe.check_stage(StageSpec.model_validate(raw)) == []


class TestConformance(RecipeConformance):
    kind = "recipe"
    name = "custom_finetune"
