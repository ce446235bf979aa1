"""A lean decode loop for the assembled model: one prefill over the spliced embeddings, then one token per step.

Why not `generate()`: for a tiny LM the work per new token is a few small matrix products, and transformers'
generic loop (logits processors, stopping criteria, kwargs re-preparation, a growing attention mask) costs several
times that in Python. Here a step is: embed the previous token through the LM, one forward with the KV cache,
an argmax (or a sample). Greedy results are those of `generate(do_sample=False)`: same positions (derived from the
left-padding mask), same mask, same cache semantics. In the prefill the last decoder layer's feed-forward block
and attention output run at the last position only (the one whose logits are read; the cache holds every
position's keys and values, which come before them).

Caches: `dynamic` grows each layer's keys/values by concatenation (transformers' DynamicCache); `static`
pre-allocates them for the whole answer and writes in place (StaticCache). `auto` is dynamic: measured on the
reference workload (CPU, batch 64), static was 13% slower than dynamic (its attention always spans the whole
pre-allocated length and the prefill needs a materialised mask), which outweighs the copies it saves; it is kept
for accelerators where a fixed shape pays (compiled or graph-captured decoding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tinyllava.constants import IMAGE_TOKEN_INDEX

CacheKind = Literal["auto", "dynamic", "static"]

# a shorter common prefix is not worth its bookkeeping
MIN_SHARED_PREFIX = 4


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
        kind = "dynamic"
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


def common_prefix(rows: list[list[int]]) -> list[int]:
    """The tokens every row starts with, up to the first image position."""
    first = rows[0]
    n = 0
    while (n < min(len(r) for r in rows) and first[n] != IMAGE_TOKEN_INDEX
           and all(r[n] == first[n] for r in rows)):
        n += 1
    return first[:n]


def _full_attention_only(lm: Any) -> bool:
    """Whether every layer attends to the whole past. A sliding window counts cache slots, so padding placed after
    a shared prefix would eat into it: such models run the plain left-padded way."""
    from transformers import DynamicCache

    try:
        layers = DynamicCache(config=lm.config).layers
    except Exception:  # noqa: BLE001 - a config transformers cannot read: be safe
        return False
    return all(type(layer).__name__ == "DynamicLayer" for layer in layers)


def _prefix_states(model: Any, prefix: list[int], store: dict, device: Any) -> list[tuple[Any, Any]]:
    """Keys and values of each layer for `prefix` alone (batch 1), computed once per model, dtype and device."""
    import torch
    from transformers import DynamicCache

    lm = model.language_model
    dtype = model.get_input_embeddings().weight.dtype
    key = (tuple(prefix), str(device), str(dtype))
    if key not in store:
        ids = torch.tensor([prefix], dtype=torch.long, device=device)
        kv = DynamicCache(config=lm.config)
        lm(inputs_embeds=model.embed(ids, None), position_ids=torch.arange(len(prefix), device=device)[None],
           cache=kv, use_cache=True, logits_to_keep=1)
        store[key] = [(layer.keys, layer.values) for layer in kv.layers]
    return store[key]


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
    shared_prefix: list[int] | None = None,
    prefix_store: dict | None = None,
    on_step: Any = None,
) -> list[list[int]]:
    """New token ids per row (stop token excluded) for left-padded `input_ids` (image positions expanded).

    `shared_prefix` (e.g. a template's system prompt, see `common_prefix`), when every row starts with it and
    `prefix_store` (a dict the caller keeps) is given, is run once (batch 1) and its keys/values reused by every
    row and every later call: the rows become [shared prefix | padding | own tokens], positions continuing after
    the prefix, padding masked out. A batch where some row does not start with it runs the plain way.

    `on_step(step, tokens)`, if given, sees each step's new token per row (a list; pad once a row is done) as it
    is chosen (for streaming) and may return True to end the loop early (every caller has what it needs).
    """
    import torch

    from tinyllava.model.supervised_loss import last_layer_row_modules, rows_only_at

    sampling = sampling or Sampling()
    lm = model.language_model
    batch = input_ids.shape[0]
    device = input_ids.device
    shared = 0
    if (prefix_store is not None and shared_prefix and len(shared_prefix) >= MIN_SHARED_PREFIX
            and _full_attention_only(lm)):
        lengths = attention_mask.sum(-1).tolist()
        width = input_ids.shape[1]
        rows = [input_ids[i, width - n:].tolist() for i, n in enumerate(lengths)]
        size = len(shared_prefix)
        if all(len(r) > size and r[:size] == shared_prefix for r in rows):
            shared = size
    if shared:
        own = [r[shared:] for r in rows]
        width = max(len(r) for r in own)
        input_ids = torch.full((batch, width), pad_id, dtype=torch.long, device=device)
        own_mask = torch.zeros((batch, width), dtype=attention_mask.dtype, device=device)
        positions = torch.ones((batch, width), dtype=torch.long, device=device)
        for i, r in enumerate(own):
            input_ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long, device=device)
            own_mask[i, width - len(r):] = 1
            positions[i, width - len(r):] = torch.arange(shared, shared + len(r), device=device)
        attention_mask = torch.cat([torch.ones((batch, shared), dtype=own_mask.dtype, device=device), own_mask], 1)
    else:
        positions = attention_mask.long().cumsum(-1) - 1
        positions.masked_fill_(attention_mask == 0, 1)
    prompt_len = attention_mask.shape[1]
    total = prompt_len + max_new_tokens
    # the whole mask up front: a step only widens the view, nothing is concatenated
    mask = torch.zeros((batch, total), dtype=attention_mask.dtype, device=device)
    mask[:, :prompt_len] = attention_mask
    kv, static = _make_cache(cache, lm, batch, total)
    stops = torch.tensor(sorted(set(stop_ids)) or [-1], device=device)
    out = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    steps = 0
    with torch.inference_mode():
        if shared:
            for layer, (keys, values) in enumerate(_prefix_states(model, shared_prefix, prefix_store, device)):
                kv.update(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1), layer)
        embeds = model.embed(input_ids, pixel_values)
        last = torch.zeros(input_ids.shape, dtype=torch.bool, device=device)
        last[:, -1] = True  # the only position whose output is read (left padding)
        with rows_only_at(last_layer_row_modules(lm), last):
            logits = lm(inputs_embeds=embeds, attention_mask=mask if static else attention_mask,
                        position_ids=positions, cache=kv, use_cache=True, logits_to_keep=1).logits[:, -1]
        position = positions[:, -1:]
        for step in range(max_new_tokens):
            token = _pick(logits, sampling)
            token = torch.where(done, torch.full_like(token, pad_id), token)
            out[:, step] = token
            steps = step + 1
            done |= torch.isin(token, stops)
            if step + 1 == max_new_tokens or bool(done.all()):
                if on_step is not None:
                    on_step(step, token.tolist())
                break
            if on_step is not None and on_step(step, token.tolist()):
                break
            mask[:, prompt_len + step] = 1
            position = position + 1
            logits = lm(input_ids=token[:, None], attention_mask=mask if static else mask[:, :prompt_len + step + 1],
                        position_ids=position, cache=kv, use_cache=True).logits[:, -1]
    rows = out[:, :steps].tolist()
    stop_set = set(stop_ids)
    return [row[:next((i for i, t in enumerate(row) if t in stop_set), len(row))] for row in rows]
