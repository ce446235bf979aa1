"""The lora recipe through the public plugin path: stages, adapters on the LLM, the connector trained fully."""

from __future__ import annotations

import copy

import pytest

from tinyllava.model.build import build_fresh
from tinyllava.plugins.registry import get_registry
from tinyllava.spec.runspec import ModelSpec, StageSpec
from tinyllava.testing import TINY_MODEL
from tinyllava.testing.conformance import RecipeConformance


def test_default_stages():
    stages = get_registry().create("recipe", "lora", {"r": 8, "alpha": 16}).default_stages()
    pre, fine = (StageSpec.model_validate(s) for s in stages)
    assert (pre.tune.llm, pre.tune.connector, pre.lr) == ("frozen", "full", 1e-3)
    assert fine.tune.llm.mode == "lora" and (fine.tune.llm.lora.r, fine.tune.llm.lora.alpha) == (8, 16)
    assert (fine.tune.connector, fine.lr, fine.resolved_save_format()) == ("full", 2e-4, "adapters")


def test_prepare_adds_adapters_and_trains_the_connector():
    from peft import PeftModel

    model = build_fresh(get_registry(), ModelSpec.model_validate(copy.deepcopy(TINY_MODEL))).model
    stage = StageSpec.model_validate(get_registry().create("recipe", "lora", {"r": 4}).default_stages()[1])
    groups = get_registry().create("recipe", "lora", {}).prepare(model, stage)
    assert isinstance(model.language_model, PeftModel)
    llm_trained = [n for n, p in model.language_model.named_parameters() if p.requires_grad]
    assert llm_trained and all("lora_" in n for n in llm_trained)
    assert all(p.requires_grad for p in model.connector.parameters())
    assert {g["name"] for g in groups} == {"llm", "connector", "connector.no_decay"}


def test_qlora_is_not_accepted():
    model = build_fresh(get_registry(), ModelSpec.model_validate(copy.deepcopy(TINY_MODEL))).model
    with pytest.raises(ValueError, match="tune.llm='qlora' is not supported by this recipe"):
        get_registry().create("recipe", "lora", {}).prepare(
            model, StageSpec.model_validate({"name": "s", "tune": {"llm": "qlora"}}))


def test_default_stages_use_only_modes_the_recipe_accepts():
    recipe = get_registry().create("recipe", "lora", {})
    for raw in recipe.default_stages():
        assert recipe.check_stage(StageSpec.model_validate(raw)) == []


class TestConformance(RecipeConformance):
    kind = "recipe"
    name = "lora"
