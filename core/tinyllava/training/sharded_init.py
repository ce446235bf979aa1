"""Build the model already partitioned when the first stage trains under DeepSpeed ZeRO-3.

Without this every rank materialises the full fp32 model before DeepSpeed partitions it: N copies of a 7B model
in host memory on an N-GPU machine. With `HfDeepSpeedConfig` set, transformers loads pretrained weights under
`deepspeed.zero.Init`: each module's weights are split over the ranks as soon as the module is built, and each
rank keeps only its slice of what it loads. What must see whole weights before training (the connector's probe
in the build, the packed-attention probe, the trainable-set probe) gathers them briefly or is skipped.

`TINYLLAVA_SHARDED_INIT=0` builds the whole model on every rank instead (to compare memory).
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterator
from typing import Any

from torch import nn


def is_partitioned(module: nn.Module) -> bool:
    """Whether ZeRO-3 holds the module's weights in slices (a parameter has a DeepSpeed id)."""
    return any(hasattr(p, "ds_id") for p in module.parameters())


def full_shape(param: Any) -> tuple[int, ...]:
    """A weight's real shape, also when ZeRO-3 has partitioned it (its own shape is then empty)."""
    return tuple(getattr(param, "ds_shape", param.shape))


@contextlib.contextmanager
def gathered(module: nn.Module) -> Iterator[None]:
    """The module's whole weights on this rank for the block (read-only), when ZeRO-3 has partitioned them."""
    if not is_partitioned(module):
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
        yield


def init_config(ds_config: dict[str, Any], batch: Any, stage: Any) -> dict[str, Any]:
    """The stage's DeepSpeed config with no "auto" left, as zero.Init reads it before the Trainer fills it in:
    batch sizes from the stage's batch plan, precision from `bf16`, size-dependent tunings left to DeepSpeed."""
    config = copy.deepcopy(ds_config)
    config["train_micro_batch_size_per_gpu"] = batch.per_device
    config["gradient_accumulation_steps"] = batch.grad_accum
    config.pop("train_batch_size", None)  # DeepSpeed derives it (micro batch × accumulation × its world size)
    config["gradient_clipping"] = stage.max_grad_norm
    config["bf16"] = {"enabled": bool(stage.bf16)}
    config["fp16"] = {"enabled": False}
    zero = config.get("zero_optimization", {})
    for key in [k for k, v in zero.items() if v == "auto"]:
        del zero[key]
    return config


def wanted(ds_config: dict[str, Any] | None) -> bool:
    from tinyllava.training.distributed import zero_stage

    return zero_stage(ds_config) == 3 and os.environ.get("TINYLLAVA_SHARDED_INIT", "1") != "0"


@contextlib.contextmanager
def sharded_init(ds_config: dict[str, Any] | None, batch: Any, stage: Any) -> Iterator[Any]:
    """Within the block, components that load through transformers (`from_pretrained`) are built partitioned over
    the ranks when `ds_config` is ZeRO-3 (else nothing changes): transformers builds them under zero.Init and
    fills each slice while loading. Components built from a bare config (tiny random models) and the connector
    stay whole until DeepSpeed partitions them at the start of training. Yields the HfDeepSpeedConfig (None when
    off); keep it alive until the Trainer has made its own."""
    if not wanted(ds_config):
        yield None
        return
    import deepspeed
    from transformers.integrations import HfDeepSpeedConfig

    config = init_config(ds_config, batch, stage)  # type: ignore[arg-type]
    deepspeed.init_distributed()  # DeepSpeed's view of the process group the run already joined
    yield HfDeepSpeedConfig(config)


def partitioned_share(module: nn.Module) -> float:
    """The share of the module's weights (by number of elements) that ZeRO-3 holds in slices."""
    total = split = 0
    for p in module.parameters():
        n = int(getattr(p, "ds_numel", p.numel()))
        total += n
        split += n if hasattr(p, "ds_id") else 0
    return split / total if total else 0.0
