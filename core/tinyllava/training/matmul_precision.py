"""The float32 matrix-multiply precision a stage trains with: torch's own setting, chosen per stage.

`highest` multiplies float32 exactly. `high` lets CUDA use TF32 tensor cores (10-bit mantissa inputs, float32
accumulation). `medium` lets both CUDA and a CPU with bf16 matrix units (Intel AMX, AVX512-BF16) round the inputs
to bfloat16 and accumulate in float32: on the reference workload's 2-core AMX Xeon a float32 linear layer's
forward and backward run 2.4x faster (measured with torch.set_float32_matmul_precision). Weights, activations and
every elementwise op stay float32, so this is the CPU's TF32, not mixed precision. `auto` is `high` on CUDA
(what TinyLLaVA Factory's `--tf32 True` does) and `highest` on the CPU, whose only faster mode rounds to bfloat16.

On the CPU such products run through oneDNN, which builds a kernel for every new problem shape (about 2 ms each
at these sizes, more than the product itself); `shape_multiple` says how far to round a batch's row lengths so
that the shapes come back step after step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

PRECISIONS = ("auto", "highest", "high", "medium")
SHAPE_MULTIPLE = 64  # rows rounded up to this many positions when oneDNN builds a kernel per shape


def resolve(precision: str, use_cuda: bool) -> str:
    """`auto` made concrete for the device; any other value as it is."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown matmul_precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "high" if use_cuda else "highest"
    return precision


def shape_multiple(precision: str, bf16: bool, use_cuda: bool) -> int:
    """How far to round row lengths: SHAPE_MULTIPLE where the CPU multiplies through oneDNN (bf16 autocast, or
    float32 at `medium`), else 1 (MKL and cuBLAS need no kernel per shape)."""
    if use_cuda:
        return 1
    return SHAPE_MULTIPLE if bf16 or resolve(precision, use_cuda) == "medium" else 1


@contextmanager
def matmul_precision(precision: str, use_cuda: bool) -> Iterator[str]:
    """Inside the block, float32 matrix multiplies run at `precision` (resolved for the device); restored after."""
    import torch

    chosen = resolve(precision, use_cuda)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(chosen)
    try:
        yield chosen
    finally:
        torch.set_float32_matmul_precision(before)


def _highest() -> Any:
    return matmul_precision("highest", use_cuda=False)


def _at_highest_function() -> type:
    import torch

    class AtHighest(torch.autograd.Function):
        """fn(*inputs) with its forward and backward both at `highest`: the inner graph is built inside forward and
        differentiated inside backward, where the outer precision would otherwise apply."""

        @staticmethod
        def forward(ctx: Any, fn: Callable[..., Any], *inputs: Any) -> Any:
            detached = [x.detach().requires_grad_(x.requires_grad) for x in inputs]
            with torch.enable_grad(), _highest():
                out = fn(*detached)
            ctx.graph = (detached, out)
            return out.detach()

        @staticmethod
        def backward(ctx: Any, grad: Any) -> tuple[Any, ...]:
            detached, out = ctx.graph
            del ctx.graph
            wanted = [x for x in detached if x.requires_grad]
            if not out.requires_grad:  # fn's output did not depend on its inputs (e.g. all zeros)
                return (None,) * (len(detached) + 1)
            with _highest():
                found = iter(torch.autograd.grad(out, wanted, grad))
            return (None, *[next(found) if x.requires_grad else None for x in detached])

    return AtHighest


_AT_HIGHEST: list[type] = []


def at_highest(fn: Callable[..., Any], *inputs: Any) -> Any:
    """fn(*inputs) -> one tensor, forward and backward at `highest` precision whatever the block around it says.

    On the CPU, attention at `medium` is 2-3x slower than at `highest` (its small per-head products pay oneDNN's
    bf16 conversions and a new kernel for every sequence length), so the attention of a `medium` stage runs
    exactly; everything else keeps the faster products."""
    import torch

    tensors = [x for x in inputs if isinstance(x, torch.Tensor)]
    if torch.get_float32_matmul_precision() == "highest" or not all(x.device.type == "cpu" for x in tensors):
        return fn(*inputs)  # on CUDA, TF32 attention is what `high` asks for
    if not torch.is_grad_enabled() or not any(x.requires_grad for x in tensors):
        with _highest():
            return fn(*inputs)
    if not _AT_HIGHEST:
        _AT_HIGHEST.append(_at_highest_function())
    return _AT_HIGHEST[0].apply(fn, *inputs)


EXACT_SDPA = "tinyllava_exact_sdpa"  # transformers' SDPA attention, run by at_highest


def _exact_sdpa_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any
                          ) -> tuple[Any, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    out = at_highest(lambda q, k, v: sdpa_attention_forward(module, q, k, v, attention_mask, **kwargs)[0],
                     query, key, value)
    return out, None


@contextmanager
def exact_attention(model: Any) -> Iterator[int]:
    """Inside the block, every part of `model` configured for transformers' SDPA attention runs it at `highest`
    (see at_highest): for a `medium` stage's vision tower, whose attention would otherwise run slower. Yields
    how many configs were switched; they are put back afterwards."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    from tinyllava.training.attention_switch import switched_attention

    AttentionInterface.register(EXACT_SDPA, _exact_sdpa_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(EXACT_SDPA, sdpa_mask)
    with switched_attention(model, EXACT_SDPA, only="sdpa") as switched:
        yield switched
