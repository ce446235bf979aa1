"""PEFT adapters inside a checkpoint: split a trained model's weights into base weights and adapters,
write the adapters in PEFT's own layout, attach them again on load, and fold them in (merge).

The split works on a state dict rather than on the live modules, so the same code serves a plain
run and a DeepSpeed ZeRO-3 run (whose live parameters are partitioned; the trainer gathers them).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from torch import nn

from tinyllava.training.parameters import (
    COMPONENTS,
    MODULE_ATTR,
    component_module,
    peft_ready,
    set_component_module,
)

ADAPTER_DIR = "adapters"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def peft_components(model: nn.Module) -> dict[str, Any]:
    """{component: PeftModel} for the components wrapped with adapters."""
    if "peft" not in sys.modules:
        return {}
    from peft import PeftModel

    out = {}
    for component in COMPONENTS:
        module = component_module(model, component)
        if isinstance(module, PeftModel):
            out[component] = module
    return out


def _alias_groups(model: nn.Module) -> dict[str, list[str]]:
    """name -> every name of the same tensor (tied weights have several)."""
    by_id: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(name)
    for name, b in model.named_buffers(remove_duplicate=False):
        by_id.setdefault(id(b), []).append(name)
    return {name: names for names in by_id.values() for name in names}


def _dequantize_into(model: nn.Module, state_dict: dict[str, Any]) -> None:
    """Replace bitsandbytes-packed weights by float32 ones: exactly the weights the quantised layer computes with."""
    if "bitsandbytes" not in sys.modules:
        return
    import bitsandbytes as bnb
    import torch
    from peft.utils.integrations import dequantize_module_weight

    for name, module in model.named_modules():
        if not isinstance(module, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)):
            continue
        key = f"{name}.weight"
        extras = (f"{name}.SCB", f"{name}.weight_format")
        for extra in [k for k in state_dict if k.startswith(key + ".") or k in extras]:
            del state_dict[extra]
        state_dict[key] = dequantize_module_weight(module).detach().to(torch.float32).cpu().contiguous()


def split_state_dict(model: nn.Module, state_dict: dict[str, Any] | None = None
                     ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(base weights in the plain model's names, {component: that component's state dict in PEFT's names}).

    Tied weights are kept once; quantised weights are stored dequantised; adapter tensors leave the base.
    """
    state_dict = dict(model.state_dict() if state_dict is None else state_dict)
    aliases = _alias_groups(model)
    for name, names in aliases.items():
        if name != names[0] and name in state_dict and names[0] in state_dict:
            del state_dict[name]
    _dequantize_into(model, state_dict)
    wrapped = peft_components(model)
    adapters: dict[str, dict[str, Any]] = {}
    base: dict[str, Any] = {}
    prefixes = {MODULE_ATTR[c]: c for c in wrapped}
    for key, value in state_dict.items():
        attr, _, rest = key.partition(".")
        component = prefixes.get(attr)
        if component is None:
            base[key] = value
            continue
        adapters.setdefault(component, {})[rest] = value
        peft_prefix = wrapped[component].base_model.prefix  # "lora_"
        parts = rest.split(".")
        if any(part.startswith(peft_prefix) for part in parts):
            continue
        if parts[:2] == ["base_model", "model"]:
            parts = parts[2:]
        parts = [p for p in parts if p != "base_layer"]
        base[f"{attr}.{'.'.join(parts)}"] = value
    return base, adapters


def write_adapters(model: nn.Module, adapters: dict[str, dict[str, Any]], out_dir: Path) -> dict[str, dict[str, Any]]:
    """Write adapters/<component>/ (adapter_config.json + adapter_model.safetensors); returns manifest entries."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    entries = {}
    for component, peft_model in peft_components(model).items():
        folder = Path(out_dir) / ADAPTER_DIR / component
        folder.mkdir(parents=True, exist_ok=True)
        weights = get_peft_model_state_dict(peft_model, state_dict=adapters[component], save_embedding_layers=False)
        config = peft_model.peft_config["default"]
        was_inference = config.inference_mode
        config.inference_mode = True
        try:
            config.save_pretrained(str(folder))
        finally:
            config.inference_mode = was_inference
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(folder / ADAPTER_WEIGHTS),
                  metadata={"format": "pt"})
        entries[component] = {"path": f"{ADAPTER_DIR}/{component}", "type": "lora",
                              "r": config.r, "alpha": config.lora_alpha}
    return entries


def attach_adapters(model: nn.Module, root: Path, entries: dict[str, dict[str, Any]], trainable: bool = False) -> None:
    """Wrap each component named in the manifest with its saved PEFT adapter."""
    from peft import PeftModel

    for component, entry in entries.items():
        module = component_module(model, component)
        wrapped = PeftModel.from_pretrained(peft_ready(module), str(Path(root) / entry["path"]), is_trainable=trainable)
        set_component_module(model, component, wrapped)


def merge_adapters(model: nn.Module) -> list[str]:
    """Fold every adapter into its component's weights (PEFT merge_and_unload); returns the merged components."""
    merged = []
    for component, wrapped in peft_components(model).items():
        set_component_module(model, component, wrapped.merge_and_unload())
        merged.append(component)
    return merged
