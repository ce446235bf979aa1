"""training.fused_ops (Llama-family RMSNorm, rotary embedding and SwiGLU with their own backward) and
training.freed_memory (freed blocks reused rather than faulted in again): the same loss and gradients as the
plain path, switched on only inside their blocks, and by the runner for a training stage."""

from __future__ import annotations

import contextlib
import resource

import pytest
import torch
from transformers.models.llama import modeling_llama

from tinyllava.training import freed_memory, fused_ops


def _llama(**config):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=128, attn_implementation="sdpa", **config)
    return LlamaForCausalLM(cfg).train()


def _loss_and_grads(model, batch, fused: bool):
    model.zero_grad(set_to_none=True)
    with fused_ops.fused_training_ops(model) if fused else contextlib.nullcontext():
        out = model(**batch)
        out.loss.backward()
        graph = _graph_nodes(out.loss.grad_fn)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), grads, graph


def _graph_nodes(fn) -> set[str]:
    seen, todo, names = set(), [fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        todo += [next_fn for next_fn, _ in node.next_functions]
    return names


def _batch(rows: int = 2, length: int = 21) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 128, (rows, length), generator=g)
    return {"input_ids": ids, "labels": ids}


def test_fused_ops_give_the_plain_loss_and_gradients():
    model = _llama()
    batch = _batch()
    loss, grads, plain_graph = _loss_and_grads(model, batch, fused=False)
    fused_loss, fused_grads, graph = _loss_and_grads(model, batch, fused=True)
    # the fused functions really ran (and the plain path's chains did not)
    assert {"_RMSNormBackward", "_RotaryBackward", "_SwiGLUBackward"} <= graph
    assert not {"PowBackward0", "NegBackward0", "SiluBackward0"} & graph
    assert {"PowBackward0", "NegBackward0", "SiluBackward0"} <= plain_graph
    assert torch.allclose(fused_loss, loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == fused_grads.keys() and len(grads) == len(list(model.parameters()))
    for name, grad in grads.items():
        assert torch.allclose(fused_grads[name], grad, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("fn", ["rms_norm", "rotary", "swiglu"])
def test_backward_passes_match_autograd_in_float64(fn):
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)

    if fn == "rms_norm":
        ok = torch.autograd.gradcheck(lambda x, w: fused_ops.rms_norm(x, w, 1e-5), (rand(2, 3, 8), rand(8)))
    elif fn == "rotary":
        theta = torch.rand(1, 5, 4, generator=g, dtype=torch.float64) * 6
        cos, sin = torch.cat([theta.cos()] * 2, -1), torch.cat([theta.sin()] * 2, -1)
        q, k = rand(1, 4, 5, 8), rand(1, 2, 5, 8)
        ok = torch.autograd.gradcheck(lambda q, k: fused_ops.apply_rotary_pos_emb(q, k, cos, sin), (q, k))
        assert all(torch.allclose(a, b) for a, b in zip(fused_ops.apply_rotary_pos_emb(q, k, cos, sin),
                                                         modeling_llama.apply_rotary_pos_emb(q, k, cos, sin),
                                                         strict=True))
    else:
        ok = torch.autograd.gradcheck(fused_ops.swiglu, (rand(3, 6), rand(3, 6)))
    assert ok


def test_rms_norm_forward_is_bitwise_the_familys_in_bf16_and_fp32():
    for dtype in (torch.float32, torch.bfloat16):
        norm = modeling_llama.LlamaRMSNorm(16, eps=1e-6)
        norm.weight.data.uniform_(0.5, 1.5)
        x = torch.randn(3, 7, 16).to(dtype)
        assert torch.equal(fused_ops.rms_norm(x, norm.weight, norm.variance_epsilon), norm(x))


def test_switched_on_only_inside_the_block_and_put_back():
    model = _llama()
    layer = model.model.layers[0]
    original_rotary = modeling_llama.apply_rotary_pos_emb
    with fused_ops.fused_training_ops(model) as switched:
        assert switched == ["rms_norm x5", "swiglu x2", "rotary x1"]  # 2 per layer + the final norm
        assert "forward" in vars(layer.input_layernorm) and "forward" in vars(layer.mlp)
        assert modeling_llama.apply_rotary_pos_emb is fused_ops.apply_rotary_pos_emb
    assert "forward" not in vars(layer.input_layernorm) and "forward" not in vars(layer.mlp)
    assert modeling_llama.apply_rotary_pos_emb is original_rotary


def test_a_module_that_does_something_else_keeps_its_own_forward():
    class ScaledNorm(modeling_llama.LlamaRMSNorm):
        def forward(self, hidden_states):
            return 2 * super().forward(hidden_states)

    model = _llama(hidden_act="gelu")  # a GeLU MLP is not SwiGLU
    model.model.norm = ScaledNorm(64)
    with fused_ops.fused_training_ops(model) as switched:
        assert switched == ["rms_norm x4", "rotary x1"]
        assert "forward" not in vars(model.model.norm) and "forward" not in vars(model.model.layers[0].mlp)


def _faults_per_round(rounds: int = 6) -> list[int]:
    """Minor page faults of each round in which 64 MiB temporaries (above glibc's largest automatic mmap
    threshold) come and go."""
    a = torch.ones(16 << 20)
    faults = []
    for _ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        b = a * 2
        c = b + a
        del b, c
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return faults


def test_freed_memory_is_reused_inside_the_block_only():
    pages = (64 << 20) // resource.getpagesize()
    with freed_memory.keep_freed_memory() as applied:
        assert applied  # glibc on Linux
        inside = _faults_per_round()
    outside = _faults_per_round()
    # inside, once the heap holds the temporaries (the first rounds may grow or rearrange a heap that earlier tests
    # left fragmented), a round needs no fresh page; leaving the block trims the kept memory, so the first round
    # after it faults its temporaries in again
    assert min(inside) < pages // 4, inside
    assert outside[0] > pages, outside  # both temporaries fresh again


def test_the_runner_trains_with_fused_ops_and_freed_memory_kept(tmp_path, monkeypatch):
    from tinyllava.spec.runspec import resolve_spec
    from tinyllava.testing import tiny_run_spec
    from tinyllava.training import trainer as trainer_module
    from tinyllava.training.runner import run_training

    seen = []
    train = trainer_module.TinyLlavaTrainer.train

    def looking_train(self, *args, **kwargs):
        norm = self.model.language_model.model.norm
        seen.append((freed_memory._depth, "forward" in vars(norm)))
        return train(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module.TinyLlavaTrainer, "train", looking_train)
    raw = tiny_run_spec(tmp_path / "runs", steps=1, num_images=4)
    raw["stages"] = raw["stages"][1:]
    run_training(resolve_spec(raw))
    assert seen == [(1, True)]
    assert freed_memory._depth == 0
