"""The training loss with the LM head applied only where a label is trained.

A LLaVA batch trains on the answers only (~10% of the positions), yet a causal LM computes logits,
and a log-softmax over the vocabulary, at every position. During training we let the LM run as it
always does but, through a forward pre-hook on its output embeddings, hand the head only the hidden
states of the supervised positions. Whatever the family does around its head (final norm before it,
bias, logit soft-capping or scaling after it) still happens, so no family needs code of its own.
The loss is the same mean over supervised tokens as transformers' causal-LM loss (a sum divided by
`num_items_in_batch` under gradient accumulation).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from tinyllava.constants import IGNORE_INDEX


def supervised_positions(labels: torch.Tensor, shift_labels: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, targets): mask (B, T) marks the positions whose next token is trained; targets (n,) are those tokens."""
    if shift_labels is None:
        shift_labels = nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    mask = shift_labels != IGNORE_INDEX
    return mask, shift_labels[mask]


class HeadPicks:
    """Whether the head was handed the picked positions (else its logits cover every position)."""

    picked = False


def padded_rows(rows: torch.Tensor, multiple: int) -> torch.Tensor:
    """(n, D) rows followed by zero rows up to a multiple of `multiple`: a matrix-multiply library that builds a
    kernel per shape (oneDNN) then sees a few shapes again and again instead of a new one every step."""
    extra = -rows.shape[0] % multiple
    return rows if extra == 0 else torch.cat([rows, rows.new_zeros((extra, *rows.shape[1:]))])


@contextmanager
def head_only_at(head: nn.Module, mask: torch.Tensor, row_multiple: int = 1) -> Iterator[HeadPicks]:
    """While active, `head` receives the hidden states at `mask` (as one (1, n, D) row) instead of all of them.

    A call whose input is not the (B, T, D) hidden states of this batch is left alone; the caller then
    picks the positions from full logits.
    """
    state = HeadPicks()

    def pick(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        hidden = args[0] if args else kwargs.get("input")
        if state.picked or not isinstance(hidden, torch.Tensor) or hidden.dim() != 3 or hidden.shape[:2] != mask.shape:
            return None
        state.picked = True
        picked = padded_rows(hidden[mask], row_multiple).unsqueeze(0)
        if args:
            return (picked, *args[1:]), kwargs
        return args, {**kwargs, "input": picked}

    handle = head.register_forward_pre_hook(pick, with_kwargs=True)
    try:
        yield state
    finally:
        handle.remove()


def supervised_loss(logits: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor, *, picked: bool,
                    num_items_in_batch: Any = None) -> torch.Tensor:
    """Cross-entropy over the supervised positions, from picked (1, n, V) or full (B, T, V) logits."""
    if not picked:
        logits = logits[mask]
    # padded_rows' zero rows cut off; upcast as transformers' causal-LM loss does
    logits = logits.reshape(-1, logits.shape[-1])[:targets.numel()].float()
    if logits.shape[0] != targets.numel():
        raise RuntimeError(f"the LM head gave {logits.shape[0]} rows of logits for {targets.numel()} trained tokens")
    if num_items_in_batch is None:
        if targets.numel() == 0:
            return logits.sum() * 0.0  # no trained token: a zero that keeps the graph
        return nn.functional.cross_entropy(logits, targets)
    total = nn.functional.cross_entropy(logits, targets, reduction="sum")
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


# -- the last decoder layer at the supervised positions only -------------------------------------------------

_FEED_FORWARD = ("mlp", "ffn", "feed_forward")
_ATTENTION = ("self_attn", "attn", "attention")
_ATTENTION_OUT = ("o_proj", "dense", "out_proj")


def _decoder_layers(language_model: nn.Module) -> nn.ModuleList | None:
    """The LLM's stack of decoder layers: the longest ModuleList whose every entry has a feed-forward block."""
    best: nn.ModuleList | None = None
    for module in language_model.modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if all(any(isinstance(getattr(layer, n, None), nn.Module) for n in _FEED_FORWARD) for layer in module):
            if best is None or len(module) > len(best):
                best = module
    return best


def last_layer_row_modules(language_model: nn.Module) -> list[nn.Module]:
    """The position-wise blocks of the last decoder layer whose outputs, at positions the head does not read,
    cannot reach the loss: its feed-forward block and its attention output projection (when they can be found).

    Nothing after the last layer mixes positions (a final norm, then the head), so at the unsupervised positions
    those blocks' outputs are dead work. Left out: a layer under activation checkpointing (the replay in the
    backward pass would run the blocks again, after the forward's hooks are gone) and mixture-of-experts blocks
    (the router's auxiliary loss averages over every token).
    """
    return _last_layer_parts(language_model)[0]


def last_layer_attention(language_model: nn.Module) -> nn.Module | None:
    """The last decoder layer's attention module, when `last_layer_row_modules` prunes that layer (else None):
    its queries are needed only at the positions the head reads (see QUERY_ROWS)."""
    blocks, attention = _last_layer_parts(language_model)
    return attention if blocks else None


def _last_layer_parts(language_model: nn.Module) -> tuple[list[nn.Module], nn.Module | None]:
    layers = _decoder_layers(language_model)
    if layers is None:
        return [], None
    last = layers[-1]
    if getattr(last, "gradient_checkpointing", False):
        return [], None
    found: list[nn.Module] = []
    for name in _FEED_FORWARD:
        block = getattr(last, name, None)
        if isinstance(block, nn.Module):
            if any("expert" in sub or "router" in sub for sub, _ in block.named_modules()):
                return [], None
            found.append(block)
            break
    attention: nn.Module | None = None
    for name in _ATTENTION:
        candidate = getattr(last, name, None)
        if isinstance(candidate, nn.Module):
            attention = candidate
            for out_name in _ATTENTION_OUT:
                out = getattr(candidate, out_name, None)
                if isinstance(out, nn.Module):
                    found.append(out)
                    break
            break
    return found, attention


# set on an attention module while only some query rows matter: a (B, T) bool mask; an attention function that
# reads it (training.packed_attention's) may compute the other rows' outputs as zeros
QUERY_ROWS = "_tinyllava_query_rows"


def _query_projection(attention: nn.Module | None) -> nn.Module | None:
    query = getattr(attention, "q_proj", None)
    return query if isinstance(query, nn.Module) else None


@contextmanager
def rows_only_at(modules: list[nn.Module], mask: torch.Tensor, attention: nn.Module | None = None,
                 row_multiple: int = 1) -> Iterator[None]:
    """While active, each of `modules` (position-wise) runs on the rows at `mask` of its (B, T, D) input only; its
    output is put back at those rows of a (B, T, D') tensor of zeros. A call with any other input is left alone.
    `attention`, if given, carries `mask` as QUERY_ROWS meanwhile, and its query projection (`q_proj`) runs at
    those rows only too: queries elsewhere only give attention outputs that nothing reads (its output projection
    is among `modules`), so zeros there change neither the loss nor any gradient."""
    index = mask.nonzero(as_tuple=True)
    query = _query_projection(attention)
    if query is not None and all(query is not m for m in modules):
        modules = [*modules, query]
    picked: dict[int, bool] = {}

    def pick(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        hidden = args[0] if args else kwargs.get("input", kwargs.get("hidden_states"))
        if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3 or hidden.shape[:2] != mask.shape:
            picked[id(module)] = False
            return None
        picked[id(module)] = True
        rows = padded_rows(hidden[index], row_multiple).unsqueeze(0)
        if args:
            return (rows, *args[1:]), kwargs
        key = "input" if "input" in kwargs else "hidden_states"
        return args, {**kwargs, key: rows}

    def put_back(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        if not picked.pop(id(module), False):
            return None
        if not isinstance(output, torch.Tensor):
            raise RuntimeError(f"{type(module).__name__} gave a {type(output).__name__}, not a tensor, for picked rows")
        full = output.new_zeros((*mask.shape, output.shape[-1]))
        return full.index_put(index, output[0, :index[0].shape[0]])

    handles = []
    try:
        for module in modules:
            handles.append(module.register_forward_pre_hook(pick, with_kwargs=True))
            handles.append(module.register_forward_hook(put_back, with_kwargs=True))
        if attention is not None:
            setattr(attention, QUERY_ROWS, mask)
        yield
    finally:
        for handle in handles:
            handle.remove()
        if attention is not None and hasattr(attention, QUERY_ROWS):
            delattr(attention, QUERY_ROWS)
