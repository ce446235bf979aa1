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


@contextmanager
def head_only_at(head: nn.Module, mask: torch.Tensor) -> Iterator[HeadPicks]:
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
        picked = hidden[mask].unsqueeze(0)
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
    logits = logits.reshape(-1, logits.shape[-1]).float()  # upcast as transformers' causal-LM loss does
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
