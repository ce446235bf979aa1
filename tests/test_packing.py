"""Sequence packing: a packed batch trains exactly like the same samples padded (loss, per-sample loss, grads)."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch

from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from tinyllava.data.dataset import Collator
from tinyllava.data.packing import plan_rows, row_capacity
from tinyllava.model.build import build_fresh
from tinyllava.plugins.registry import get_registry
from tinyllava.spec.runspec import ModelSpec
from tinyllava.testing import TINY_MODEL
from tinyllava.training.packed_attention import _Calls, can_switch, varlen_attention

CONVERSATIONS = [
    ("What shape is it?", "a red circle", True),
    ("Hello there, how are you doing today?", "fine thanks", False),
    ("Colour?", "red", True),
    ("Say something long about squares and circles", "square circle square red", False),
    ("Is it red?", "yes it is a red square", True),
]


@pytest.fixture(scope="module")
def assembled():
    torch.manual_seed(0)
    return build_fresh(get_registry(), ModelSpec.model_validate(copy.deepcopy(TINY_MODEL)))


def compact_items(tok) -> list[dict]:
    """Dataset-style items: compact ids (one IMAGE_TOKEN_INDEX per image), the collator expands them."""
    template = get_registry().create("chat_template", "llama", {})
    items = []
    for n, (question, answer, image) in enumerate(CONVERSATIONS):
        conv = [{"from": "human", "value": ("<image>\n" if image else "") + question}, {"from": "gpt", "value": answer}]
        enc = template.encode(conv, tok)
        item = {"input_ids": torch.tensor(enc.input_ids), "labels": torch.tensor(enc.labels)}
        if image:
            item["pixel_values"] = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(n))
        items.append(item)
    return items


def loss_and_grads(model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def only_sample(batch: dict, positions: torch.Tensor) -> dict:
    """The batch with labels kept at `positions` (a boolean mask) only: its loss is that sample's loss."""
    out = dict(batch)
    out["labels"] = batch["labels"].masked_fill(~positions, IGNORE_INDEX)
    return out


def sample_spans(batch: dict) -> list[tuple[int, int, int]]:
    """(row, start, end) of every sample in a packed batch, from its position ids (padding tails included)."""
    spans = []
    for r, pos in enumerate(batch["position_ids"]):
        starts = (pos == 0).nonzero().squeeze(-1).tolist() + [len(pos)]
        spans += [(r, a, b) for a, b in zip(starts, starts[1:], strict=False)]
    return spans


@pytest.mark.parametrize(("mode", "attention", "multiple"),
                         [("train", "dense", 1), ("eval", "dense", 1), ("train", "varlen", 1), ("train", "varlen", 64),
                          ("train", "dense", 64)])
def test_packed_batch_matches_unpacked_loss_per_sample_loss_and_gradients(assembled, mode, attention, multiple):
    """`multiple`: rows, and the rows handed to the head and the last layer, padded to a multiple of it (as for
    oneDNN's per-shape kernels, see training.matmul_precision): the padding changes nothing."""
    model, tok = assembled.model, assembled.tokenizer
    context = varlen_attention(model.language_model) if attention == "varlen" else contextlib.nullcontext()
    model.supervised_row_multiple = multiple
    try:
        with context:
            _check_packed_equals_unpacked(model, tok, mode, attention, multiple)
    finally:
        del model.supervised_row_multiple


def _check_packed_equals_unpacked(model, tok, mode, attention, multiple):
    model.train(mode == "train")
    for p in model.vision_tower.parameters():
        p.requires_grad_(False)  # as in a stage with a frozen tower
    items = compact_items(tok)
    seq_len = model.config.image_seq_len
    padded = Collator(tok.pad_token_id, image_seq_len=seq_len)(items)
    packing = {"varlen": True} if attention == "varlen" else {"pack_length": 250}
    packed = Collator(tok.pad_token_id, image_seq_len=seq_len, pack=True, width_multiple=multiple, **packing)(items)
    assert packed["input_ids"].shape[0] == (1 if attention == "varlen" else 3)  # several samples share a row
    assert packed["input_ids"].shape[1] % multiple == 0
    calls, picked = _Calls.varlen, _Calls.picked
    assert "attention_mask" not in packed
    assert (packed["input_ids"] == IMAGE_TOKEN_INDEX).sum() == (padded["input_ids"] == IMAGE_TOKEN_INDEX).sum()

    loss_u, grads_u = loss_and_grads(model, padded)
    loss_p, grads_p = loss_and_grads(model, packed)
    torch.testing.assert_close(loss_p, loss_u, rtol=1e-5, atol=1e-6)
    assert (_Calls.varlen > calls) == (attention == "varlen")
    # training through varlen attention: the last layer's queries ran at the trained positions only
    assert _Calls.picked - picked == (len(items) if (attention, mode) == ("varlen", "train") else 0)
    assert grads_u.keys() == grads_p.keys() and any("connector" in n for n in grads_u)
    for name in grads_u:
        torch.testing.assert_close(grads_p[name], grads_u[name], rtol=1e-4, atol=1e-6, msg=name)

    # per sample: each packed sample's loss equals that sample trained alone
    alone = {}
    for item in items:
        single = Collator(tok.pad_token_id, image_seq_len=seq_len)([item])
        alone[tuple(single["input_ids"][0].tolist())] = model(**single).loss.detach()
    seen = 0
    for r, a, b in sample_spans(packed):
        ids = tuple(packed["input_ids"][r, a:b].tolist())
        if ids not in alone:
            continue  # a padding tail
        mask = torch.zeros_like(packed["labels"], dtype=torch.bool)
        mask[r, a:b] = True
        with torch.no_grad():
            loss = model(**only_sample(packed, mask)).loss
        torch.testing.assert_close(loss, alone[ids], rtol=1e-5, atol=1e-6)
        seen += 1
    assert seen == len(items)


def test_first_label_of_each_packed_sample_is_never_trained(assembled):
    tok = assembled.tokenizer
    items = compact_items(tok)
    for item in items:
        item["labels"] = item["input_ids"].clone().masked_fill(item["input_ids"] == IMAGE_TOKEN_INDEX, IGNORE_INDEX)
    packed = Collator(tok.pad_token_id, image_seq_len=4, pack=True, pack_length=1000)(items)
    assert packed["input_ids"].shape[0] == 1
    starts = (packed["position_ids"][0] == 0).nonzero().squeeze(-1)
    assert len(starts) == len(items)
    assert (packed["labels"][0, starts] == IGNORE_INDEX).all()
    # every other text position keeps its label
    text = (packed["input_ids"][0] != IMAGE_TOKEN_INDEX)
    text[starts] = False
    assert (packed["labels"][0, text] == packed["input_ids"][0, text]).all()


def test_images_follow_the_packed_order(assembled):
    tok = assembled.tokenizer
    items = compact_items(tok)
    for n, item in enumerate(items):
        if "pixel_values" in item:
            item["pixel_values"] = torch.full((3, 2, 2), float(n))
    packed = Collator(tok.pad_token_id, image_seq_len=3, pack=True, pack_length=40)(items)
    # walk the rows: each image span's sample must be the one whose image comes next in pixel_values
    owners = []
    for r, a, b in sample_spans(packed):
        ids = packed["input_ids"][r, a:b]
        if (ids == IMAGE_TOKEN_INDEX).any():
            compact = ids.tolist()
            for n, item in enumerate(items):
                expanded = Collator(0, image_seq_len=3)([item])["input_ids"][0].tolist()
                if expanded == compact:
                    owners.append(n)
    assert [int(v) for v in packed["pixel_values"][:, 0, 0, 0]] == owners
    assert len(owners) == sum("pixel_values" in it for it in items)


def test_plan_rows_keeps_every_sample_once_and_respects_capacity():
    lengths = [5, 9, 3, 7, 2, 8, 1]
    rows = plan_rows(lengths, 10)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 10 for row in rows)
    assert len(rows) == 4  # 35 positions in rows of 10
    assert plan_rows([12, 3], 10) == [[0], [1]]  # too long: a row of its own
    assert row_capacity(lengths, None, varlen=False) == 9  # default: the longest sample
    assert row_capacity(lengths, None, varlen=True) == sum(lengths)
    assert row_capacity(lengths, 64, varlen=False) == 64


def test_varlen_attention_is_switched_on_only_inside_the_block(assembled):
    lm = assembled.model.language_model
    assert can_switch(lm)
    with varlen_attention(lm):
        assert lm.config._attn_implementation == "tinyllava_varlen_sdpa"
    assert lm.config._attn_implementation == "sdpa"


def test_the_runner_picks_varlen_attention_for_an_sdpa_llm(assembled):
    from tinyllava.training.runner import packed_attention_mode

    assert packed_attention_mode(assembled.model) == "varlen"
    assert assembled.model.language_model.config._attn_implementation == "sdpa"


def test_an_llm_not_on_sdpa_gets_the_dense_block_mask(assembled):
    from tinyllava.training.runner import packed_attention_mode

    config = assembled.model.language_model.config
    config._attn_implementation_internal = "eager"
    try:
        assert packed_attention_mode(assembled.model) == "dense"
    finally:
        config._attn_implementation_internal = "sdpa"
