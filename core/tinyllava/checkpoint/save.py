"""Write a checkpoint directory that loads offline with nothing but the plugins it names.

Two layouts, chosen by the stage's `save_format` (never by a path name):

- full: `model.safetensors` holds every weight; adapters trained in the stage are merged in.
- adapters: `model.safetensors` holds the base weights (quantised layers stored dequantised) and each
  adapted component has a PEFT adapter in `adapters/<component>/`; the manifest lists them.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from tinyllava import __version__
from tinyllava.constants import CHECKPOINT_FORMAT_VERSION, MANIFEST_NAME

WEIGHTS_NAME = "model.safetensors"
SAVE_FORMATS = ("full", "adapters")


def plugin_versions(registry: Any, components: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """{kind/name: {plugin, distribution, version}} for each component in use."""
    out: dict[str, dict[str, str]] = {}
    for kind, comp in components.items():
        try:
            entry = registry.entry(kind, comp["name"])
        except LookupError:
            continue
        out[f"{kind}/{comp['name']}"] = {
            "plugin": entry.plugin_id, "distribution": entry.distribution, "version": entry.version,
        }
    return out


def save_checkpoint(
    out_dir: Path,
    model: Any,
    tokenizer: Any,
    image_processor: Any,
    *,
    chat_template: dict[str, Any],
    spec: dict[str, Any] | None = None,
    stage: str | None = None,
    registry: Any = None,
    state_dict: dict[str, Any] | None = None,
    save_format: str = "full",
    extra_manifest: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint. `state_dict` (default: the model's own) is how ZeRO-3 passes gathered weights."""
    from safetensors.torch import save_file

    from tinyllava.checkpoint.adapters import split_state_dict, write_adapters
    from tinyllava.plugins.registry import get_registry

    if save_format not in SAVE_FORMATS:
        raise ValueError(f"save_format {save_format!r} is unknown; use one of {', '.join(SAVE_FORMATS)}")
    registry = registry or get_registry()
    out_dir = Path(out_dir)
    if (out_dir / MANIFEST_NAME).is_file():
        (out_dir / MANIFEST_NAME).unlink()  # a half-rewritten directory must never look complete
    shutil.rmtree(out_dir / "adapters", ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = model.config
    components = dict(config.components)
    components["chat_template"] = chat_template
    base, adapter_states = split_state_dict(model, state_dict)
    entries = write_adapters(model, adapter_states, out_dir) if adapter_states else {}
    save_file({k: v.detach().cpu().contiguous() for k, v in base.items()}, str(out_dir / WEIGHTS_NAME),
              metadata={"format": "pt"})
    config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir / "tokenizer")
    image_processor.save_pretrained(out_dir / "image_processor")
    manifest = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "tinyllava_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "stage": stage,
        "weights": WEIGHTS_NAME,
        "save_format": "adapters" if entries else "full",
        "features": ["adapters"] if entries else [],
        "adapters": entries,
        "components": components,
        "plugins": plugin_versions(registry, components),
        "image_preprocess": config.image_preprocess,
        "image_seq_len": config.image_seq_len,
        "max_length": config.model_max_length,
        "spec": spec,
        **(extra_manifest or {}),
    }
    if entries and save_format == "full":
        _merge_in_place(out_dir, manifest, registry)
        return out_dir
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return out_dir


def _merge_in_place(out_dir: Path, manifest: dict[str, Any], registry: Any) -> None:
    """Turn a just-written adapters layout into the full layout (the adapters merged into the weights)."""
    from tinyllava.checkpoint.merge import merge_checkpoint

    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    staging = out_dir.with_name(out_dir.name + ".merging")
    shutil.rmtree(staging, ignore_errors=True)
    merge_checkpoint(out_dir, staging, registry=registry)
    merged = json.loads((staging / MANIFEST_NAME).read_text())
    merged.pop("merged_from", None)  # merged where it was trained: no separate source
    (staging / MANIFEST_NAME).write_text(json.dumps(merged, indent=2))
    shutil.rmtree(out_dir)
    staging.rename(out_dir)
