"""Llama-family decoder blocks with hand-written backward passes, switched on while a stage trains.

At the sizes tinyllava trains on a CPU (hidden 256-2048), the matrix multiplies are compute-bound and near
the core's peak; what is left is memory-bound elementwise work, and autograd records it one op at a time:
RMSNorm's pow/mean/rsqrt/mul chain, rotary embedding's slice/neg/cat (whose backward fills zero tensors for
every slice) and SwiGLU's silu-times-up. Here each is one autograd Function with an analytic backward that
allocates less and makes fewer passes over memory:

- RMSNorm saves the input and one reciprocal RMS per row; backward is r * (g*w - n * mean(g*w * n)).
- Rotary embedding's backward is the rotation by -theta (cos, and sin with the halves swapped), written in
  place into one gradient tensor: no slices, no zero fills, no concatenation.
- SwiGLU (silu(gate) * up) saves gate and up (not silu(gate) as well) and computes both gradients at once.

The values are the family's own, within float rounding; only the autograd bookkeeping changes. A module
is switched only when its class's forward is, bytecode for bytecode, Llama's (transformers copies the same
code into Mistral, Qwen2, ...), so a family that does something else keeps its own code.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import MethodType
from typing import Any

import torch
from torch import nn

# -- the autograd functions ----------------------------------------------------------------------------------


class _RMSNorm(torch.autograd.Function):
    """weight * (x / rms(x)), computed in float32 (float64 stays float64) and cast back before the weight, as
    Llama's RMSNorm does."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        h = x.to(_compute_dtype(x))
        rstd = torch.rsqrt(h.pow(2).mean(-1, keepdim=True).add_(eps))
        ctx.save_for_backward(x, weight, rstd)
        return weight * (h * rstd).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, weight, rstd = ctx.saved_tensors
        normed = x.to(rstd.dtype) * rstd
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = (grad * normed.to(x.dtype)).reshape(-1, weight.shape[-1]).sum(0).to(weight.dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            g = (grad * weight).to(rstd.dtype)
            dot = (g * normed).mean(-1, keepdim=True)
            grad_x = g.addcmul_(normed, dot, value=-1).mul_(rstd).to(x.dtype)
        return grad_x, grad_weight, None


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return _RMSNorm.apply(x, weight, eps)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin_first: torch.Tensor, sin_second: torch.Tensor,
            sign: float) -> torch.Tensor:
    """x*cos plus, in place, (-x2 * sin_first, x1 * sin_second) times sign on the (first, second) halves."""
    half = x.shape[-1] // 2
    out = x * cos
    out[..., :half].addcmul_(x[..., half:], sin_first, value=-sign)
    out[..., half:].addcmul_(x[..., :half], sin_second, value=sign)
    return out


class _Rotary(torch.autograd.Function):
    """(q*cos + rotate_half(q)*sin, k*cos + rotate_half(k)*sin), cos and sin broadcastable and without grad."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(cos, sin)
        half = sin.shape[-1] // 2
        first, second = sin[..., :half], sin[..., half:]
        return _rotate(q, cos, first, second, 1.0), _rotate(k, cos, first, second, 1.0)

    @staticmethod
    def backward(ctx: Any, grad_q: torch.Tensor, grad_k: torch.Tensor) -> tuple[Any, Any, None, None]:
        cos, sin = ctx.saved_tensors
        # rotate_half's transpose is minus rotate_half: d/dq = g*cos - rotate_half(g*sin), the rotation by -theta:
        # (g1*cos1 + g2*sin2, g2*cos2 - g1*sin1)
        half = sin.shape[-1] // 2
        first, second = sin[..., half:], sin[..., :half]
        out_q = _rotate(grad_q, cos, first, second, -1.0) if ctx.needs_input_grad[0] else None
        out_k = _rotate(grad_k, cos, first, second, -1.0) if ctx.needs_input_grad[1] else None
        return out_q, out_k, None, None


def apply_rotary_pos_emb(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                         unsqueeze_dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Llama's apply_rotary_pos_emb (same arguments, same values) with a backward of its own."""
    if cos.requires_grad or sin.requires_grad or cos.shape[-1] % 2:
        return _reference().apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim)
    return _Rotary.apply(q, k, cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim))


class _SwiGLU(torch.autograd.Function):
    """silu(gate) * up."""

    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return nn.functional.silu(gate).mul_(up)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        gate, up = ctx.saved_tensors
        grad_up = nn.functional.silu(gate).mul_(grad) if ctx.needs_input_grad[1] else None
        grad_gate = None
        if ctx.needs_input_grad[0]:
            grad_gate = torch.ops.aten.silu_backward(grad * up, gate)
        return grad_gate, grad_up


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return _SwiGLU.apply(gate, up)


# -- the forwards switched in --------------------------------------------------------------------------------


def _rms_norm_forward(self: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    return rms_norm(hidden_states, self.weight, self.variance_epsilon)


def _mlp_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x)))


# -- which modules ---------------------------------------------------------------------------------------------


def _reference() -> Any:
    from transformers.models.llama import modeling_llama

    return modeling_llama


def _same_code(a: Any, b: Any) -> bool:
    """Whether two functions (decorators unwrapped) run the same bytecode on the same names."""
    ca, cb = getattr(inspect.unwrap(a), "__code__", None), getattr(inspect.unwrap(b), "__code__", None)
    return ca is not None and cb is not None and ca.co_code == cb.co_code and ca.co_names == cb.co_names


def _is_silu(module: Any) -> bool:
    from transformers.activations import SiLUActivation

    return isinstance(module, (nn.SiLU, SiLUActivation))


def _switchable(language_model: nn.Module) -> tuple[list[nn.Module], list[nn.Module], list[Any]]:
    """(RMSNorms, SwiGLU MLPs, modeling modules whose apply_rotary_pos_emb is Llama's) of the LLM."""
    ref = _reference()
    norms, mlps, modules = [], [], {}
    for module in language_model.modules():
        forward = getattr(type(module), "forward", None)
        if forward is None or "forward" in vars(module):  # already switched by someone else: leave it
            continue
        if _same_code(forward, ref.LlamaRMSNorm.forward) and isinstance(getattr(module, "weight", None), torch.Tensor):
            norms.append(module)
        elif _same_code(forward, ref.LlamaMLP.forward) and _is_silu(getattr(module, "act_fn", None)):
            mlps.append(module)
        else:
            family = sys.modules.get(type(module).__module__)
            rotary = getattr(family, "apply_rotary_pos_emb", None)
            if (rotary is not None and rotary is not apply_rotary_pos_emb
                    and _same_code(rotary, ref.apply_rotary_pos_emb) and hasattr(module, "q_proj")):
                modules[id(family)] = family
    return norms, mlps, list(modules.values())


@contextmanager
def fused_training_ops(language_model: nn.Module) -> Iterator[list[str]]:
    """Inside the block, the LLM's Llama-style RMSNorms, SwiGLU MLPs and rotary embedding run the fused functions
    above; everything is put back afterwards. Yields what was switched (e.g. ["rms_norm x9", ...])."""
    norms, mlps, families = _switchable(language_model)
    for module in norms:
        module.forward = MethodType(_rms_norm_forward, module)
    for module in mlps:
        module.forward = MethodType(_mlp_forward, module)
    originals = [(family, family.apply_rotary_pos_emb) for family in families]
    for family, _ in originals:
        family.apply_rotary_pos_emb = apply_rotary_pos_emb
    switched = [f"{name} x{n}" for name, n in (("rms_norm", len(norms)), ("swiglu", len(mlps)),
                                                ("rotary", len(families))) if n]
    try:
        yield switched
    finally:
        for module in [*norms, *mlps]:
            del module.forward
        for family, original in originals:
            family.apply_rotary_pos_emb = original
