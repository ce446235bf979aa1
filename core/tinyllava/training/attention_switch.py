"""Point a model's attention at another registered implementation for the length of a block.

transformers picks a layer's attention function by its config's `_attn_implementation`; every config in the
model (a composite model has several) is switched, and each gets its own value back afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def attention_configs(model: Any, only: str | None = None) -> list[Any]:
    """The distinct configs of `model`'s modules that choose an attention implementation (`only`: those set to it)."""
    seen: dict[int, Any] = {}
    for module in model.modules():
        cfg = getattr(module, "config", None)
        if cfg is None or not hasattr(cfg, "_attn_implementation_internal"):
            continue
        if only is None or cfg._attn_implementation_internal == only:
            seen.setdefault(id(cfg), cfg)
    return list(seen.values())


@contextmanager
def switched_attention(model: Any, name: str, only: str | None = None) -> Iterator[int]:
    """Inside the block, `model`'s attention configs (see attention_configs) say `name`; yields how many."""
    configs = attention_configs(model, only)
    before = [cfg._attn_implementation_internal for cfg in configs]
    for cfg in configs:
        cfg._attn_implementation_internal = name
    try:
        yield len(configs)
    finally:
        for cfg, value in zip(configs, before, strict=True):
            cfg._attn_implementation_internal = value
