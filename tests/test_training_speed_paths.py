"""The training fast paths of the assembled model: cached tower features, a frozen tower outside autograd,
and the LM head at supervised positions only (same loss and gradients as the full-logits path)."""

from __future__ import annotations

import copy

import pytest
import torch

from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from tinyllava.model.build import build_fresh
from tinyllava.plugins.registry import get_registry
from tinyllava.spec.runspec import ModelSpec
from tinyllava.testing import TINY_MODEL

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
         "num_key_value_heads": 2}
FAMILIES = {
    "llama-tied": {"name": "llama", "config": {**SMALL, "tie_word_embeddings": True}},
    "llama-untied": {"name": "llama", "config": {**SMALL, "tie_word_embeddings": False}},
    "phi2": {"name": "phi", "config": SMALL},  # final LayerNorm, a head with a bias
    "phi3": {"name": "phi", "config": {"model_type": "phi3", **SMALL}},
    "stablelm": {"name": "stablelm", "config": SMALL},
    "qwen2": {"name": "qwen", "config": SMALL},
    "qwen3": {"name": "qwen", "config": {"model_type": "qwen3", "head_dim": 16, **SMALL}},
    "gemma": {"name": "gemma", "config": {**SMALL, "head_dim": 16}},
    # soft-capped logits: a small cap so that the capping changes the loss
    "gemma2": {"name": "gemma", "config": {"model_type": "gemma2", **SMALL, "head_dim": 16,
                                           "final_logit_softcapping": 0.5}},
    "gemma3": {"name": "gemma", "config": {"model_type": "gemma3_text", **SMALL, "head_dim": 16,
                                           "final_logit_softcapping": 0.5}},
    "openelm": {"name": "openelm", "config": {
        "model_dim": 32, "head_dim": 8, "num_transformer_layers": 1, "num_gqa_groups": 2,
        "qkv_multipliers": [1.0, 1.0], "ffn_multipliers": [1.0, 1.0], "ffn_dim_divisor": 16,
        "share_input_output_layers": True}},
}


def _build(llm: dict | None = None):
    torch.manual_seed(0)
    raw = copy.deepcopy(TINY_MODEL)
    if llm is not None:
        raw["llm"] = {**copy.deepcopy(llm), "tokenizer_vocab_size": 300}
    return build_fresh(get_registry(), ModelSpec.model_validate(raw)).model


@pytest.fixture(scope="module")
def tiny():
    return _build()


def _batch(model, seed: int = 0, rows: int = 3, length: int = 40) -> dict[str, torch.Tensor]:
    """Rows with one image each, answers supervised in spans, right padding of different lengths."""
    g = torch.Generator().manual_seed(seed)
    vocab = model.config.text_config["vocab_size"] if isinstance(model.config.text_config, dict) else 300
    n_img = model.config.image_seq_len
    ids = torch.randint(3, min(vocab, 250), (rows, length), generator=g)
    ids[:, 1:1 + n_img] = IMAGE_TOKEN_INDEX
    labels = torch.full_like(ids, IGNORE_INDEX)
    attention = torch.ones_like(ids)
    for r in range(rows):
        end = length - 3 * r  # right padding
        attention[r, end:] = 0
        start = 1 + n_img + 4 + r
        labels[r, start:end] = ids[r, start:end]
        labels[r, start + 5:start + 8] = IGNORE_INDEX  # a second turn's question
    pixels = torch.randn(rows, 3, 32, 32, generator=g)
    return {"input_ids": ids, "labels": labels, "attention_mask": attention, "pixel_values": pixels}


def _loss_and_grads(model, batch, *, head_only: bool, **extra):
    model.supervised_head_only = head_only
    try:
        model.zero_grad(set_to_none=True)
        out = model(**batch, **extra)
        out.loss.backward()
    finally:
        del model.supervised_head_only  # back to the class default
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out, grads


def _rows_seen(modules):
    """Rows each module's forward received (after any pre-hook), per call."""
    seen: list[int] = []
    handles = [m.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[:-1].numel()))
               for m in modules]
    return seen, handles


def _assert_same(model, batch, **extra):
    from tinyllava.model.supervised_loss import last_layer_row_modules

    full, full_grads = _loss_and_grads(model, batch, head_only=False, **extra)
    last = last_layer_row_modules(model.language_model)
    seen, handles = _rows_seen(last)
    try:
        fast, fast_grads = _loss_and_grads(model, batch, head_only=True, **extra)
    finally:
        for handle in handles:
            handle.remove()
    n_trained = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    checkpointed = getattr(_layers(model)[-1], "gradient_checkpointing", False)
    # the last layer's feed-forward block and attention output ran at the trained positions only
    assert checkpointed or (len(last) == 2 and seen == [n_trained, n_trained]), (seen, n_trained)
    assert fast.logits.shape[:2] == (1, n_trained)  # the head really ran at the trained positions only
    assert full.logits.shape[:2] == batch["input_ids"].shape
    assert torch.allclose(fast.loss, full.loss, rtol=1e-5, atol=1e-6), (fast.loss, full.loss)
    assert full_grads.keys() == fast_grads.keys() and full_grads
    for name, grad in full_grads.items():
        assert torch.allclose(fast_grads[name], grad, rtol=1e-4, atol=1e-6), name


def _layers(model):
    from tinyllava.model.supervised_loss import _decoder_layers

    return _decoder_layers(model.language_model)


def test_only_the_last_layer_runs_at_trained_positions():
    """Two layers: the first layer's blocks still see every position (its outputs feed the last layer's keys)."""
    model = _build({"name": "llama", "config": {**SMALL, "num_hidden_layers": 2}}).train()
    layers = _layers(model)
    assert len(layers) == 2
    first, handles = _rows_seen([layers[0].mlp])
    try:
        _assert_same(model, _batch(model, seed=3))
    finally:
        for handle in handles:
            handle.remove()
    assert first == [3 * 40, 3 * 40]  # full path, then fast path: every position both times


def test_last_layer_under_checkpointing_runs_every_position():
    from tinyllava.model.supervised_loss import last_layer_row_modules

    model = _build().train()
    model.activation_checkpointing_enable()
    assert last_layer_row_modules(model.language_model) == []
    _assert_same(model, _batch(model, seed=4))


# -- the feature-cache interface ----------------------------------------------------------------------


def test_image_features_skip_the_tower_and_give_the_same_embeddings(tiny):
    model = tiny.eval()
    batch = _batch(model)
    with torch.no_grad():
        features = model.vision_features(batch["pixel_values"])
        reference = model.embed(batch["input_ids"], batch["pixel_values"])
    assert features.shape == (3, model.config.num_vision_tokens, model.vision_tower.hidden_size)
    calls: list[int] = []
    handle = model.vision_tower.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        with torch.no_grad():
            embeds = model.embed(batch["input_ids"], image_features=features)
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        image_features=features, labels=batch["labels"])
            ref_out = model(**batch)
    finally:
        handle.remove()
    assert calls == [1]  # only the pixel_values call ran the tower
    assert torch.equal(embeds, reference)
    assert torch.allclose(out.loss, ref_out.loss)


def test_image_features_train_the_connector(tiny):
    model = tiny.train()
    batch = _batch(model)
    features = model.vision_features(batch["pixel_values"])
    model.zero_grad(set_to_none=True)
    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
          image_features=features).loss.backward()
    assert all(p.grad is not None for p in model.connector.parameters())
    model.zero_grad(set_to_none=True)
    model.eval()


def test_missing_images_name_both_inputs(tiny):
    batch = _batch(tiny)
    with pytest.raises(ValueError, match="image_features"):
        tiny(input_ids=batch["input_ids"])


# -- a frozen tower stays out of autograd -------------------------------------------------------------


@pytest.mark.parametrize("checkpointing", [False, True])
def test_frozen_tower_never_joins_the_graph(checkpointing):
    model = _build()
    model.vision_tower.requires_grad_(False)
    model.train()
    if checkpointing:
        model.activation_checkpointing_enable()
    seen: list[torch.Tensor] = []
    handle = model.vision_tower.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        batch = _batch(model)
        model(**batch).loss.backward()
    finally:
        handle.remove()
    assert len(seen) == 1
    assert not seen[0].requires_grad and seen[0].grad_fn is None
    assert all(p.grad is None for p in model.vision_tower.parameters())
    assert all(p.grad is not None for p in model.connector.parameters())


def test_a_training_tower_still_gets_gradients():
    model = _build()
    model.train()
    model.activation_checkpointing_enable()
    model(**_batch(model)).loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.vision_tower.parameters())


# -- LM head and loss at supervised positions only ----------------------------------------------------


@pytest.mark.parametrize("family", list(FAMILIES))
def test_supervised_head_matches_full_logits(family):
    model = _build(FAMILIES[family]).train()
    _assert_same(model, _batch(model))


def test_supervised_head_with_num_items_in_batch(tiny):
    model = tiny.train()
    batch = _batch(model, seed=1)
    _assert_same(model, batch, num_items_in_batch=torch.tensor(97))
    model.eval()


def test_supervised_head_under_lora_and_checkpointing():
    from tinyllava.spec.runspec import StageSpec
    from tinyllava.training.parameters import apply_tuning

    model = _build()
    stage = StageSpec.model_validate({
        "name": "s", "recipe": "lora", "data": {"json_path": "x.json"},
        "tune": {"llm": {"mode": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}, "vision_tower": "frozen",
                 "connector": "full"}})
    apply_tuning(model, stage, allowed_modes=("frozen", "full", "lora"))
    model.train()
    model.activation_checkpointing_enable()
    assert type(model.language_model).__name__.startswith("Peft")
    _assert_same(model, _batch(model, seed=2))


def test_eval_mode_and_no_grad_keep_full_logits(tiny):
    batch = _batch(tiny)
    with torch.no_grad():
        assert tiny.eval()(**batch).logits.shape[:2] == batch["input_ids"].shape
        assert tiny.train()(**batch).logits.shape[:2] == batch["input_ids"].shape
    tiny.eval()


# -- frozen weights in the compute dtype, multi-tensor AdamW ------------------------------------------


def test_cast_frozen_casts_only_frozen_weights_and_restores_them_exactly():
    from tinyllava.training.parameters import cast_frozen, restore_frozen

    model = _build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.vision_tower.requires_grad_(False)
    changed = cast_frozen(model, torch.bfloat16, skip=("connector",))
    assert changed and all(p.dtype == torch.bfloat16 for p in model.vision_tower.parameters())
    assert all(p.dtype == torch.float32 for p in model.language_model.parameters())  # trains
    model.connector.requires_grad_(False)
    assert all(p.dtype == torch.float32 for p in model.connector.parameters())  # skipped
    model.train()
    model(**_batch(model)).loss.backward()  # a bf16 tower feeds an fp32 connector without autocast
    restore_frozen(changed)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith("vision_tower."))  # bit for bit


class _Batches(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _trainer(model, tmp_path, **args):
    from transformers import TrainingArguments

    from tinyllava.spec.runspec import StageSpec
    from tinyllava.training.parameters import apply_tuning
    from tinyllava.training.trainer import TinyLlavaTrainer

    stage = StageSpec.model_validate({"name": "s", "recipe": "base", "data": {"json_path": "x.json"},
                                      "tune": {"llm": "frozen", "vision_tower": "frozen", "connector": "full"}})
    groups = apply_tuning(model, stage)
    batch = _batch(model)
    items = [{k: v[i] for k, v in batch.items()} for i in range(3)]
    training_args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=3, max_steps=2,
                                      report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
                                      remove_unused_columns=False, **args)
    return TinyLlavaTrainer(model=model, args=training_args, train_dataset=_Batches(items), param_groups=groups,
                            data_collator=lambda xs: {k: torch.stack([x[k] for x in xs]) for k in xs[0]})


def test_bf16_stage_trains_with_frozen_weights_in_bf16_and_gives_them_back(tmp_path):
    from transformers import TrainerCallback

    model = _build()
    seen: dict[str, torch.dtype] = {}

    class Look(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            seen["tower"] = next(model.vision_tower.parameters()).dtype
            seen["llm"] = next(model.language_model.parameters()).dtype
            seen["connector"] = next(model.connector.parameters()).dtype

    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("connector.")}
    trainer = _trainer(model, tmp_path, bf16=True)
    trainer.add_callback(Look())
    trainer.train()
    assert seen == {"tower": torch.bfloat16, "llm": torch.bfloat16, "connector": torch.float32}
    after = model.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], v) for k, v in frozen.items())


def test_fp32_stage_keeps_every_weight_in_fp32_and_uses_fused_adamw(tmp_path):
    model = _build()
    trainer = _trainer(model, tmp_path)
    trainer.train()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert trainer.optimizer.defaults.get("fused") is True


def test_multi_tensor_adamw_keeps_an_explicit_choice():
    from tinyllava.training.trainer import multi_tensor_adamw

    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))]}]
    assert multi_tensor_adamw(groups, {}) == {"fused": True}
    assert multi_tensor_adamw(groups, {"foreach": False}) == {}
    meta = [{"params": [torch.nn.Parameter(torch.zeros(2, device="meta"))]}]
    assert multi_tensor_adamw(meta, {}) == {"foreach": True}
