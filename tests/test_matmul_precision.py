"""A stage's float32 matmul precision: chosen per device, restored afterwards, attention kept exact under `medium`,
and the shape padding that keeps oneDNN's per-shape kernels reusable changes neither loss nor gradients."""

from __future__ import annotations

import copy

import pytest
import torch
from pydantic import ValidationError

from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from tinyllava.model.build import build_fresh
from tinyllava.plugins.registry import get_registry
from tinyllava.spec.runspec import ModelSpec, StageSpec
from tinyllava.testing import TINY_MODEL
from tinyllava.training.matmul_precision import (
    EXACT_SDPA,
    SHAPE_MULTIPLE,
    at_highest,
    matmul_precision,
    resolve,
    shape_multiple,
)


@pytest.fixture(autouse=True)
def _restore_precision():
    before = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(before)


def test_auto_is_tf32_on_cuda_and_exact_on_the_cpu():
    assert resolve("auto", use_cuda=True) == "high"
    assert resolve("auto", use_cuda=False) == "highest"
    assert resolve("medium", use_cuda=False) == "medium"
    with pytest.raises(ValueError, match="use one of auto, highest, high, medium"):
        resolve("bf16", use_cuda=False)


def test_shapes_are_padded_only_where_the_cpu_builds_a_kernel_per_shape():
    assert shape_multiple("medium", bf16=False, use_cuda=False) == SHAPE_MULTIPLE
    assert shape_multiple("auto", bf16=True, use_cuda=False) == SHAPE_MULTIPLE
    assert shape_multiple("auto", bf16=False, use_cuda=False) == 1
    assert shape_multiple("highest", bf16=False, use_cuda=False) == 1
    assert shape_multiple("medium", bf16=True, use_cuda=True) == 1


def test_the_stage_field_is_checked():
    assert StageSpec(name="s", matmul_precision="medium").matmul_precision == "medium"
    assert StageSpec(name="s").matmul_precision == "auto"
    with pytest.raises(ValidationError, match="matmul_precision"):
        StageSpec(name="s", matmul_precision="tf32")


def test_the_block_sets_the_precision_and_gives_the_old_one_back():
    torch.set_float32_matmul_precision("high")
    with matmul_precision("medium", use_cuda=False) as chosen:
        assert chosen == "medium" and torch.get_float32_matmul_precision() == "medium"
    assert torch.get_float32_matmul_precision() == "high"
    with pytest.raises(RuntimeError), matmul_precision("auto", use_cuda=False):
        assert torch.get_float32_matmul_precision() == "highest"
        raise RuntimeError("a failing stage")
    assert torch.get_float32_matmul_precision() == "high"


def _attention(seen: list[str]):
    def fn(q, k, v):
        seen.append(torch.get_float32_matmul_precision())
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        if out.requires_grad:
            out.register_hook(lambda g: seen.append(torch.get_float32_matmul_precision()))
        return out
    return fn


def test_at_highest_runs_forward_and_backward_exactly_with_the_same_values_and_gradients():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 12, 8, generator=g, requires_grad=True) for _ in range(3))
    weight = torch.randn(1, 2, 12, 8, generator=g)
    seen: list[str] = []
    torch.set_float32_matmul_precision("highest")
    plain = _attention(seen)(q, k, v)
    plain_grads = torch.autograd.grad((plain * weight).sum(), (q, k, v))
    seen.clear()
    torch.set_float32_matmul_precision("medium")
    out = at_highest(_attention(seen), q, k, v)
    grads = torch.autograd.grad((out * weight).sum(), (q, k, v))
    assert seen == ["highest", "highest"]  # the forward, then the backward hook
    assert torch.get_float32_matmul_precision() == "medium"
    torch.testing.assert_close(out, plain, rtol=0, atol=0)
    for a, b in zip(grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_at_highest_without_gradients_and_with_an_output_that_ignores_its_inputs():
    q = torch.randn(1, 2, 4, 8, requires_grad=True)
    seen: list[str] = []
    torch.set_float32_matmul_precision("medium")
    with torch.no_grad():
        out = at_highest(_attention(seen), q, q, q)
    assert seen == ["highest"] and not out.requires_grad
    zeros = at_highest(lambda a: torch.zeros(3), q)  # e.g. a sample with no trained position
    (zeros.sum() + (q * 0).sum()).backward()
    assert torch.equal(q.grad, torch.zeros_like(q)) and torch.get_float32_matmul_precision() == "medium"


def test_padded_head_rows_change_neither_the_loss_nor_the_gradients():
    torch.manual_seed(0)
    model = build_fresh(get_registry(), ModelSpec.model_validate(copy.deepcopy(TINY_MODEL))).model.train()
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 250, (2, 30), generator=g)
    ids[:, 1:1 + model.config.image_seq_len] = IMAGE_TOKEN_INDEX
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, -7:] = ids[:, -7:]
    batch = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids),
             "pixel_values": torch.randn(2, 3, 32, 32, generator=g)}
    head_rows: list[int] = []
    handle = model.language_model.get_output_embeddings().register_forward_hook(
        lambda m, args, out: head_rows.append(args[0].shape[-2]))
    results = []
    try:
        for multiple in (1, 64):
            model.supervised_row_multiple = multiple
            model.zero_grad(set_to_none=True)
            loss = model(**batch).loss
            loss.backward()
            results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                            if p.grad is not None}))
    finally:
        handle.remove()
        del model.supervised_row_multiple
    assert head_rows == [14, 64]  # 2 rows x 7 trained next tokens, then padded to 64
    (loss_1, grads_1), (loss_64, grads_64) = results
    torch.testing.assert_close(loss_64, loss_1, rtol=1e-6, atol=1e-7)
    assert grads_1.keys() == grads_64.keys() and grads_1
    for name, grad in grads_1.items():
        torch.testing.assert_close(grads_64[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_at_highest_leaves_tensors_off_the_cpu_alone():
    q = torch.empty(1, 2, 4, 8, device="meta", requires_grad=True)
    seen: list[str] = []
    torch.set_float32_matmul_precision("high")
    at_highest(lambda a: seen.append(torch.get_float32_matmul_precision()) or a, q)
    assert seen == ["high"]


@pytest.mark.parametrize("precision", ["medium", "auto"])
def test_the_runner_trains_a_stage_at_its_precision_with_rows_rounded_where_it_pays(tmp_path, monkeypatch, precision):
    from tinyllava.spec.runspec import resolve_spec
    from tinyllava.testing import tiny_run_spec
    from tinyllava.training import trainer as trainer_module
    from tinyllava.training.runner import run_training

    seen: list[tuple[str, int, int, int]] = []
    towers: list[str] = []
    step = trainer_module.TinyLlavaTrainer.training_step

    def looking_step(self, model, inputs, *args, **kwargs):
        inner = self.accelerator.unwrap_model(model)
        towers.append(inner.vision_tower.config._attn_implementation_internal)
        seen.append((torch.get_float32_matmul_precision(), inputs["input_ids"].shape[-1],
                     inner.supervised_row_multiple, self.data_collator.width_multiple))
        return step(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(trainer_module.TinyLlavaTrainer, "training_step", looking_step)
    torch.set_float32_matmul_precision("high")
    raw = tiny_run_spec(tmp_path / "runs", steps=2, num_images=4)
    raw["stages"] = raw["stages"][1:]
    raw["stages"][0]["matmul_precision"] = precision
    run_training(resolve_spec(raw))
    assert torch.get_float32_matmul_precision() == "high"  # given back after the stage
    assert len(seen) == 2
    if precision == "medium":
        assert all(p == "medium" and width % SHAPE_MULTIPLE == 0 and rows == cols == SHAPE_MULTIPLE
                   for p, width, rows, cols in seen), seen
        assert towers == [EXACT_SDPA, EXACT_SDPA]  # the tower's attention runs exactly
    else:
        assert all(p == "highest" and rows == cols == 1 for p, _, rows, cols in seen), seen
        assert towers == ["sdpa", "sdpa"]


def test_exact_attention_runs_a_towers_sdpa_at_highest_and_switches_it_back():
    from tinyllava.training.matmul_precision import exact_attention

    torch.manual_seed(0)
    built = build_fresh(get_registry(), ModelSpec.model_validate(copy.deepcopy(TINY_MODEL)))
    tower = built.model.vision_tower
    assert tower.config._attn_implementation_internal == "sdpa"
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    seen: list[str] = []
    real = torch.nn.functional.scaled_dot_product_attention

    def looking(*args, **kwargs):
        seen.append(torch.get_float32_matmul_precision())
        return real(*args, **kwargs)

    with torch.no_grad():
        torch.set_float32_matmul_precision("highest")
        reference = tower(pixels)
        torch.set_float32_matmul_precision("medium")
        with pytest.MonkeyPatch.context() as mp, exact_attention(tower) as switched:
            mp.setattr(torch.nn.functional, "scaled_dot_product_attention", looking)
            exact = tower(pixels)
    assert switched >= 1 and seen and set(seen) == {"highest"}
    assert tower.config._attn_implementation_internal == "sdpa"
    assert exact.shape == reference.shape and torch.isfinite(exact).all()
