"""The qlora recipe: quantised Linear layers under LoRA, real parameter counts, float32 norms."""

from __future__ import annotations

import copy

from tinyllava.model.build import build_fresh
from tinyllava.plugins.registry import get_registry
from tinyllava.spec.runspec import ModelSpec, StageSpec
from tinyllava.testing import TINY_MODEL
from tinyllava.testing.conformance import RecipeConformance
from tinyllava.training.parameters import parameter_table


def _model():
    return build_fresh(get_registry(), ModelSpec.model_validate(copy.deepcopy(TINY_MODEL))).model


def test_default_stages():
    stages = get_registry().create("recipe", "qlora", {"bits": 8}).default_stages()
    fine = StageSpec.model_validate(stages[1])
    assert fine.tune.llm.mode == "qlora" and fine.tune.llm.quant.bits == 8
    assert (fine.tune.llm.lora.r, fine.tune.llm.lora.alpha, fine.lr) == (128, 256, 2e-4)


def test_four_bit_layers_count_their_real_size():
    import bitsandbytes as bnb

    plain = _model()
    totals = {row[0]: row[1] for row in parameter_table(plain, StageSpec(name="s"))}
    model = _model()
    stage = StageSpec.model_validate({"name": "s", "tune": {
        "llm": {"mode": "qlora", "lora": {"r": 4}}, "vision_tower": "frozen", "connector": "full"}})
    get_registry().create("recipe", "qlora", {}).prepare(model, stage)
    layers = [m for m in model.language_model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.weight.quant_state.nested for m in layers)  # double quantisation
    assert all(m.weight.quant_type == "nf4" for m in layers)
    rows = {row[0]: row for row in parameter_table(model, stage)}
    lora = sum(p.numel() for n, p in model.language_model.named_parameters() if "lora_" in n)
    assert rows["llm"][1] == totals["llm"] + lora and rows["llm"][2] == lora
    assert rows["llm"][3] == "qlora nf4 r4"


def test_default_stages_use_only_modes_the_recipe_accepts():
    recipe = get_registry().create("recipe", "qlora", {})
    for raw in recipe.default_stages():
        assert recipe.check_stage(StageSpec.model_validate(raw)) == []


class TestConformance(RecipeConformance):
    kind = "recipe"
    name = "qlora"
