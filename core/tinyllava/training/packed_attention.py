"""Variable-length attention for packed rows without flash attention: SDPA run once per packed sample.

A packed row's block-diagonal mask makes dense SDPA pay for the whole row squared, most of it masked
out, so packing more than one sample per row would cost more attention than padding. This attention
function reads the packed samples' boundaries (`cu_seq_lens_q`, the same keyword flash attention's
variable-length path reads) and runs causal SDPA on each sample alone: attention costs the sum of the
samples' squared lengths, the row carries no padding, and the result is exactly that of the samples
run separately. Any call without boundaries (padded batches, generation) is plain SDPA.

It is registered with transformers' AttentionInterface and mask interface under NAME and switched on
for the LLM only while a packed stage trains.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from tinyllava.model.supervised_loss import QUERY_ROWS
from tinyllava.training.attention_switch import switched_attention
from tinyllava.training.matmul_precision import at_highest

NAME = "tinyllava_varlen_sdpa"


class _Calls:
    varlen = 0
    picked = 0  # samples whose attention ran at picked queries only


def varlen_sdpa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                          is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.pop("cu_seq_lens_q", None)
    if bounds is None and attention_mask is None:
        bounds, attention_mask = _from_positions(kwargs.get("position_ids"), query)
    if (bounds is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]
            or kwargs.get("position_bias") is not None):
        out = at_highest(lambda q, k, v: sdpa_attention_forward(module, q, k, v, attention_mask, dropout=dropout,
                                                                scaling=scaling, is_causal=is_causal, **kwargs)[0],
                         query, key, value)
        return out, None
    for name in ("cu_seq_lens_k", "max_length_q", "max_length_k"):
        kwargs.pop(name, None)
    cuts = bounds.tolist()
    total = query.shape[2]
    edges = sorted({0, total, *(c for c in cuts if 0 < c < total)})
    sizes = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    # split, not slices: the backward of one split is one concatenation, where each slice's backward would
    # fill a zero tensor of the whole row
    rows = getattr(module, QUERY_ROWS, None)  # the last layer in training: only these queries reach the loss
    if rows is not None and tuple(rows.shape) != (1, total):
        rows = None
    picks = rows[0].split(sizes) if rows is not None else [None] * len(sizes)

    def per_sample(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        outputs = []
        for q, k, v, pick in zip(query.split(sizes, dim=2), key.split(sizes, dim=2), value.split(sizes, dim=2),
                                 picks, strict=True):
            if pick is None:
                out, _ = sdpa_attention_forward(module, q, k, v, None, dropout=dropout, scaling=scaling,
                                                is_causal=True, **kwargs)
            else:
                out = _attention_at(module, q, k, v, pick.nonzero().squeeze(1), dropout, scaling, kwargs)
            outputs.append(out)
        return torch.cat(outputs, dim=1)

    result = at_highest(per_sample, query, key, value)  # see training.matmul_precision
    _Calls.varlen += 1
    return result, None


def _from_positions(position_ids: Any, query: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(boundaries, mask) for rows that pack samples (position ids restarting) but came without either: one row's
    boundaries, or the block-diagonal causal mask of several rows; (None, None) when no row packs samples."""
    if not isinstance(position_ids, torch.Tensor) or position_ids.dim() != 2 or position_ids.shape[1] != query.shape[2]:
        return None, None
    position_ids = position_ids.expand(query.shape[0], -1)
    starts = torch.diff(position_ids, prepend=position_ids[:, :1] - 1, dim=-1) != 1
    starts[:, 0] = True
    if int(starts.sum()) == starts.shape[0]:
        return None, None  # one sample per row: plain causal attention
    if position_ids.shape[0] == 1:
        cuts = starts[0].nonzero().squeeze(1).tolist() + [position_ids.shape[1]]
        return torch.tensor(cuts, dtype=torch.int32, device=query.device), None
    sample = starts.cumsum(-1)
    length = position_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=query.device).tril()
    return None, ((sample[:, :, None] == sample[:, None, :]) & causal)[:, None]


def _mask_unless_packed(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """SDPA's mask for padded rows; none for rows without padding (a packed row's samples are kept apart by
    varlen_sdpa_attention itself)."""
    from transformers.masking_utils import sdpa_mask

    if kwargs.get("attention_mask") is None:
        return None
    return sdpa_mask(*args, **kwargs)


def _attention_at(module: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, at: torch.Tensor,
                  dropout: float, scaling: float | None, kwargs: dict[str, Any]) -> torch.Tensor:
    """One sample's causal attention output (1, L, H, D) computed for the queries at positions `at` only (zeros
    elsewhere): each attends to the keys up to its own position."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    length = q.shape[2]
    full = q.new_zeros((1, length, q.shape[1], q.shape[3]))
    if at.numel() == 0:
        return full
    _Calls.picked += 1
    allowed = torch.arange(length, device=q.device)[None, :] <= at[:, None]
    out, _ = sdpa_attention_forward(module, q.index_select(2, at), k, v, allowed[None, None], dropout=dropout,
                                    scaling=scaling, is_causal=False, **kwargs)
    return full.index_copy(1, at, out)


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    AttentionInterface.register(NAME, varlen_sdpa_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, _mask_unless_packed)


def can_switch(language_model: Any) -> bool:
    """Only an SDPA LLM without sliding windows: per-sample causal SDPA is then exactly what its mask says."""
    config = getattr(language_model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    configs = [config] + [getattr(config, k) for k in getattr(config, "sub_configs", {}) if getattr(config, k, None)]
    for cfg in configs:
        if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
            return False
        if getattr(cfg, "layer_types", None) and any(t != "full_attention" for t in cfg.layer_types):
            return False
    return True


@contextmanager
def varlen_attention(language_model: Any) -> Iterator[None]:
    """Run the LLM's attention through varlen_sdpa_attention inside the block; restored afterwards."""
    _register()
    with switched_attention(language_model, NAME):
        yield


def reaches_attention(model: Any, batch: dict[str, Any]) -> bool:
    """Whether a forward on a packed batch calls varlen_sdpa_attention (an LLM that does not dispatch through
    transformers' AttentionInterface never would, and would need the dense block mask instead)."""
    before = _Calls.varlen
    with torch.no_grad():
        model(**batch)
    return _Calls.varlen > before
