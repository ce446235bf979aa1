"""In training, the last decoder layer's query projection runs at the supervised positions only (the queries
elsewhere feed attention outputs nothing reads), with the loss and gradients of the full path."""

from __future__ import annotations

import copy

import pytest
import torch

from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from tinyllava.model.build import build_fresh
from tinyllava.plugins.registry import get_registry
from tinyllava.spec.runspec import ModelSpec
from tinyllava.testing import TINY_MODEL

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2}


def _model(family: str, **config):
    torch.manual_seed(0)
    raw = copy.deepcopy(TINY_MODEL)
    raw["llm"] = {"name": family, "config": {**SMALL, **config}, "tokenizer_vocab_size": 300}
    return build_fresh(get_registry(), ModelSpec.model_validate(raw)).model.train()


def _batch(model, rows: int = 2, length: int = 36) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(3, 250, (rows, length), generator=g)
    ids[:, 1:1 + model.config.image_seq_len] = IMAGE_TOKEN_INDEX
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, -9:] = ids[:, -9:]
    return {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids),
            "pixel_values": torch.randn(rows, 3, 32, 32, generator=g)}


def _run(model, batch, head_only: bool):
    model.supervised_head_only = head_only
    try:
        model.zero_grad(set_to_none=True)
        out = model(**batch)
        out.loss.backward()
    finally:
        del model.supervised_head_only
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), grads


@pytest.mark.parametrize("family,config", [("llama", {}), ("qwen", {"model_type": "qwen3", "head_dim": 8})])
def test_last_layer_queries_run_at_trained_positions_only(family, config):
    from tinyllava.model.supervised_loss import _decoder_layers

    model = _model(family, **config)
    batch = _batch(model)
    layers = _decoder_layers(model.language_model)
    rows: list[int] = []
    handles = [layer.self_attn.q_proj.register_forward_hook(
        lambda m, args, out, i=i: rows.append((i, args[0].shape[:-1].numel()))) for i, layer in enumerate(layers)]
    try:
        full_loss, full_grads = _run(model, batch, head_only=False)
        fast_loss, fast_grads = _run(model, batch, head_only=True)
    finally:
        for handle in handles:
            handle.remove()
    n_trained = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    every = batch["input_ids"].numel()
    assert rows == [(0, every), (1, every), (0, every), (1, n_trained)]  # full path, then the fast path
    assert torch.allclose(fast_loss, full_loss, rtol=1e-5, atol=1e-6)
    assert full_grads.keys() == fast_grads.keys()
    for name, grad in full_grads.items():
        assert torch.allclose(fast_grads[name], grad, rtol=1e-4, atol=1e-6), name
