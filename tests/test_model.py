"""The assembled model: splice, loss, gradient accumulation, text-only samples, batched generation."""

from __future__ import annotations

import copy

import pytest
import torch

from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from tinyllava.data.dataset import Collator, expand_image_tokens
from tinyllava.model.build import build_fresh
from tinyllava.plugins.registry import get_registry
from tinyllava.spec.runspec import ModelSpec
from tinyllava.testing import TINY_MODEL


@pytest.fixture(scope="module")
def assembled():
    torch.manual_seed(0)
    spec = ModelSpec.model_validate(copy.deepcopy(TINY_MODEL))
    return build_fresh(get_registry(), spec)


def sample(model, tok, text: str, answer: str, image: bool) -> dict:
    template = get_registry().create("chat_template", "llama", {})
    conv = [{"from": "human", "value": ("<image>\n" if image else "") + text}, {"from": "gpt", "value": answer}]
    enc = template.encode(conv, tok)
    ids, labels = expand_image_tokens(enc.input_ids, enc.labels, model.config.image_seq_len)
    item = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}
    if image:
        g = torch.Generator().manual_seed(len(text))
        item["pixel_values"] = torch.randn(3, 32, 32, generator=g)
    return item


def batch_of(assembled, specs):
    model, tok = assembled.model, assembled.tokenizer
    return Collator(tok.pad_token_id)([sample(model, tok, *s) for s in specs])


def test_image_seq_len_matches_tower_and_connector(assembled):
    cfg = assembled.model.config
    assert cfg.num_vision_tokens == (32 // 8) ** 2  # patch strategy drops CLS
    assert cfg.image_seq_len == cfg.num_vision_tokens  # mlp keeps the token count


def test_loss_equals_the_llms_own_loss(assembled):
    model = assembled.model.eval()
    batch = batch_of(assembled, [("What shape is it?", "a red circle", True), ("Hello there", "hi", False)])
    out = model(**batch)
    embeds = model.embed(batch["input_ids"], batch["pixel_values"])
    ref = model.language_model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"])
    assert torch.allclose(out.loss, ref.loss)
    # and by hand: shifted cross-entropy over the trained positions only
    logits = ref.logits[:, :-1].reshape(-1, ref.logits.shape[-1])
    target = batch["labels"][:, 1:].reshape(-1)
    manual = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    assert torch.allclose(out.loss, manual, atol=1e-6)


def test_image_features_land_exactly_at_image_positions(assembled):
    model = assembled.model.eval()
    batch = batch_of(assembled, [("What shape?", "circle", True)])
    embeds = model.embed(batch["input_ids"], batch["pixel_values"])
    feats = model.encode_images(batch["pixel_values"])[0]
    positions = (batch["input_ids"][0] == IMAGE_TOKEN_INDEX).nonzero().squeeze(-1)
    assert torch.allclose(embeds[0, positions], feats)
    text_pos = (batch["input_ids"][0] != IMAGE_TOKEN_INDEX).nonzero().squeeze(-1)
    word = model.get_input_embeddings()(batch["input_ids"][0, text_pos])
    assert torch.allclose(embeds[0, text_pos], word)


def test_text_only_samples_never_run_the_vision_tower(assembled):
    model = assembled.model.eval()
    calls = []
    handle = model.vision_tower.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        text_batch = batch_of(assembled, [("Hi", "hello", False), ("How are you?", "fine", False)])
        assert "pixel_values" not in text_batch
        model(**text_batch)
        assert calls == []
        mixed = batch_of(assembled, [("Hi", "hello", False), ("What shape?", "circle", True)])
        model(**mixed)
        assert calls == [1]  # one image for the one image sample, no blank image for the other
    finally:
        handle.remove()


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_accumulation_matches_one_batch(assembled):
    """Two micro-batches with num_items_in_batch give the same loss and gradients as the whole batch."""
    model = assembled.model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    specs = [("What shape?", "a red circle at the top", True), ("Hi", "hello", False),
             ("Where is it?", "top left", True), ("Count them", "3", True)]
    full = batch_of(assembled, specs)
    model.zero_grad()
    n_items = int((full["labels"][:, 1:] != IGNORE_INDEX).sum())
    full_loss = model(**full).loss
    full_loss.backward()
    ref = _grads(model)

    model.zero_grad()
    total = 0.0
    for part in (specs[:1], specs[1:]):  # uneven split: a mean of means would differ
        mb = batch_of(assembled, part)
        loss = model(**mb, num_items_in_batch=torch.tensor(n_items)).loss
        loss.backward()
        total += loss.item()
    acc = _grads(model)
    assert total == pytest.approx(full_loss.item(), rel=1e-5)
    assert ref.keys() == acc.keys()
    for name in ref:
        assert torch.allclose(ref[name], acc[name], atol=1e-6), name
    model.zero_grad()
    model.eval()


def test_mismatched_image_count_is_an_error(assembled):
    batch = batch_of(assembled, [("What shape?", "circle", True)])
    with pytest.raises(ValueError, match="no pixel_values"):
        assembled.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    two = torch.cat([batch["pixel_values"], batch["pixel_values"]])
    with pytest.raises(ValueError, match="image positions"):
        assembled.model(input_ids=batch["input_ids"], pixel_values=two)
