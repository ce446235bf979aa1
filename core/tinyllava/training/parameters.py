"""Freeze or train each component and build optimizer groups with per-component learning rates.

No weight decay on norms and biases.
"""

from __future__ import annotations

from typing import Any

from torch import nn

COMPONENTS = ("llm", "vision_tower", "connector")
MODULE_ATTR = {"llm": "language_model", "vision_tower": "vision_tower", "connector": "connector"}


def component_module(model: nn.Module, component: str) -> nn.Module:
    return getattr(model, MODULE_ATTR[component])


def no_decay_names(module: nn.Module) -> set[str]:
    """Parameter names (relative to module) of biases and of every normalisation layer."""
    names: set[str] = set()
    for mod_name, mod in module.named_modules():
        is_norm = isinstance(mod, (nn.LayerNorm, nn.GroupNorm)) or "norm" in type(mod).__name__.lower()
        for p_name, _ in mod.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if is_norm or p_name.endswith("bias"):
                names.add(full)
    return names


def apply_tuning(model: nn.Module, stage: Any, allowed_modes: tuple[str, ...] = ("frozen", "full")) -> list[dict]:
    groups: list[dict[str, Any]] = []
    for component in COMPONENTS:
        mode = getattr(stage.tune, component)
        if mode not in allowed_modes:
            raise ValueError(
                f"stage {stage.name!r}: tune.{component}={mode!r} is not supported by this recipe; "
                f"use one of {', '.join(allowed_modes)}"
            )
        module = component_module(model, component)
        train = mode != "frozen"
        module.requires_grad_(train)
        if not train:
            continue
        lr = getattr(stage.component_lr, component) or stage.lr
        skip = no_decay_names(module)
        decay = [p for n, p in module.named_parameters() if p.requires_grad and n not in skip]
        no_decay = [p for n, p in module.named_parameters() if p.requires_grad and n in skip]
        if decay:
            groups.append({"params": decay, "lr": lr, "weight_decay": stage.weight_decay, "name": f"{component}"})
        if no_decay:
            groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{component}.no_decay"})
    if not groups:
        raise ValueError(f"stage {stage.name!r}: every component is frozen; nothing would train")
    return groups


def parameter_table(model: nn.Module, stage: Any) -> list[tuple[str, int, int, str]]:
    """(component, total, trainable, mode) rows; counts ZeRO-3 partitioned parameters by their full size."""
    rows = []
    for component in COMPONENTS:
        module = component_module(model, component)
        total = trainable = 0
        for p in module.parameters():
            n = int(getattr(p, "ds_numel", 0) or p.numel())
            total += n
            trainable += n if p.requires_grad else 0
        rows.append((component, total, trainable, getattr(stage.tune, component)))
    return rows
