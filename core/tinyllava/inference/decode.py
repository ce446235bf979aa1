"""A lean decode loop for the assembled model: one prefill over the spliced embeddings, then one token per step.

Why not `generate()`: for a tiny LM the work per new token is a few small matrix products, and transformers'
generic loop (logits processors, stopping criteria, kwargs re-preparation, a growing attention mask) costs several
times that in Python. Here a step is: embed the previous token through the LM, one forward with the KV cache,
an argmax (or a sample). Greedy results are those of `generate(do_sample=False)`: same positions (derived from the
left-padding mask), same mask, same cache semantics.

Caches: `dynamic` grows each layer's keys/values by concatenation (transformers' DynamicCache); `static`
pre-allocates them for the whole answer and writes in place (StaticCache), which saves the re-allocation and copy of
the whole cache at every step once the batch is large; `auto` picks static from STATIC_CACHE_MIN_BATCH rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

CacheKind = Literal["auto", "dynamic", "static"]

# from this many rows a step's cache copy costs more than the static cache's full-length attention (measured on CPU)
STATIC_CACHE_MIN_BATCH = 16


@dataclass
class Sampling:
    """temperature 0: greedy. Otherwise softmax(logits / temperature), restricted to the top-p nucleus."""

    temperature: float = 0.0
    top_p: float = 1.0
    generator: Any = None


def _make_cache(kind: CacheKind, lm: Any, batch: int, max_len: int) -> tuple[Any, bool]:
    """(cache, is_static)."""
    from transformers import DynamicCache, StaticCache

    if kind == "auto":
        kind = "static" if batch >= STATIC_CACHE_MIN_BATCH else "dynamic"
    if kind == "static":
        try:
            return StaticCache(config=lm.config, max_cache_len=max_len), True
        except Exception:  # noqa: BLE001 - a config transformers cannot size statically: grow dynamically
            pass
    return DynamicCache(config=lm.config), False


def _pick(logits: Any, sampling: Sampling) -> Any:
    import torch

    if sampling.temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the strictly more likely tokens
        sorted_probs = sorted_probs.masked_fill(before >= sampling.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=sampling.generator).squeeze(-1)


def decode(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    pixel_values: Any,
    *,
    max_new_tokens: int,
    stop_ids: list[int],
    pad_id: int,
    sampling: Sampling | None = None,
    cache: CacheKind = "auto",
) -> list[list[int]]:
    """New token ids per row (stop token excluded) for left-padded `input_ids` (image positions expanded)."""
    import torch

    sampling = sampling or Sampling()
    lm = model.language_model
    batch, prompt_len = input_ids.shape
    device = input_ids.device
    total = prompt_len + max_new_tokens
    # the whole mask up front: a step only widens the view, nothing is concatenated
    mask = torch.zeros((batch, total), dtype=attention_mask.dtype, device=device)
    mask[:, :prompt_len] = attention_mask
    positions = attention_mask.long().cumsum(-1) - 1
    positions.masked_fill_(attention_mask == 0, 1)
    kv, static = _make_cache(cache, lm, batch, total)
    stops = torch.tensor(sorted(set(stop_ids)) or [-1], device=device)
    out = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    steps = 0
    with torch.inference_mode():
        embeds = model.embed(input_ids, pixel_values)
        logits = lm(inputs_embeds=embeds, attention_mask=mask[:, :total] if static else attention_mask,
                    position_ids=positions, cache=kv, use_cache=True, logits_to_keep=1).logits[:, -1]
        position = positions[:, -1:]
        for step in range(max_new_tokens):
            token = _pick(logits, sampling)
            token = torch.where(done, torch.full_like(token, pad_id), token)
            out[:, step] = token
            steps = step + 1
            done |= torch.isin(token, stops)
            if step + 1 == max_new_tokens or bool(done.all()):
                break
            mask[:, prompt_len + step] = 1
            position = position + 1
            logits = lm(input_ids=token[:, None], attention_mask=mask if static else mask[:, :prompt_len + step + 1],
                        position_ids=position, cache=kv, use_cache=True).logits[:, -1]
    rows = out[:, :steps].tolist()
    stop_set = set(stop_ids)
    return [row[:next((i for i, t in enumerate(row) if t in stop_set), len(row))] for row in rows]

