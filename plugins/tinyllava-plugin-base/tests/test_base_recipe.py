"""The base recipe through the public plugin path: default stages, freezing, lr groups, no decay."""

from __future__ import annotations

import copy

import pytest
import torch

from tinyllava.model.build import build_fresh
from tinyllava.plugins.registry import get_registry
from tinyllava.spec.runspec import ModelSpec, StageSpec
from tinyllava.testing import TINY_MODEL


@pytest.fixture(scope="module")
def model():
    return build_fresh(get_registry(), ModelSpec.model_validate(copy.deepcopy(TINY_MODEL))).model


def test_default_stages_are_the_papers():
    stages = get_registry().create("recipe", "base", {}).default_stages()
    pre, fine = (StageSpec.model_validate(s) for s in stages)
    assert (pre.name, pre.lr, pre.chat_template.name) == ("pretrain", 1e-3, "pretrain")
    assert (pre.tune.llm, pre.tune.vision_tower, pre.tune.connector) == ("frozen", "frozen", "full")
    assert (fine.name, fine.lr) == ("finetune", 2e-5)
    assert (fine.tune.llm, fine.tune.vision_tower, fine.tune.connector) == ("full", "frozen", "full")
    assert pre.batch_size * pre.grad_accum == 256 and fine.batch_size * fine.grad_accum == 128


def test_prepare_freezes_and_groups_learning_rates(model):
    recipe = get_registry().create("recipe", "base", {})
    stage = StageSpec.model_validate({
        "name": "s", "tune": {"llm": "full", "vision_tower": "frozen", "connector": "full"},
        "lr": 2e-5, "component_lr": {"connector": 1e-3}, "weight_decay": 0.1,
    })
    groups = recipe.prepare(model, stage)
    assert not any(p.requires_grad for p in model.vision_tower.parameters())
    assert all(p.requires_grad for p in model.connector.parameters())
    by_name = {g["name"]: g for g in groups}
    assert by_name["connector"]["lr"] == 1e-3 and by_name["llm"]["lr"] == 2e-5
    assert by_name["llm"]["weight_decay"] == 0.1 and by_name["llm.no_decay"]["weight_decay"] == 0.0
    no_decay_ids = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    for name, p in model.language_model.named_parameters():
        is_norm_or_bias = "norm" in name or name.endswith("bias")
        assert (id(p) in no_decay_ids) == is_norm_or_bias, name
    grouped = sum(p.numel() for g in groups for p in g["params"])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert grouped == trainable
    optimizer = torch.optim.AdamW([dict(g) for g in groups])
    assert sorted({g["lr"] for g in optimizer.param_groups}) == [2e-5, 1e-3]


def test_unknown_mode_and_all_frozen_are_errors(model):
    recipe = get_registry().create("recipe", "base", {})
    with pytest.raises(ValueError, match="not supported by this recipe"):
        recipe.prepare(model, StageSpec.model_validate({"name": "s", "tune": {"llm": "lora"}}))
    with pytest.raises(ValueError, match="nothing would train"):
        recipe.prepare(model, StageSpec.model_validate({"name": "s", "tune": {"connector": "frozen"}}))


from tinyllava.testing.conformance import RecipeConformance  # noqa: E402


class TestBaseRecipeConformance(RecipeConformance):
    kind = "recipe"
    name = "base"
    options = {}
