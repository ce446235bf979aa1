"""Write a checkpoint directory that loads offline with nothing but the plugins it names."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tinyllava import __version__
from tinyllava.constants import CHECKPOINT_FORMAT_VERSION, MANIFEST_NAME

WEIGHTS_NAME = "model.safetensors"


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
) -> Path:
    from safetensors.torch import save_model

    from tinyllava.plugins.registry import get_registry

    registry = registry or get_registry()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = model.config
    components = dict(config.components)
    components["chat_template"] = chat_template
    save_model(model, str(out_dir / WEIGHTS_NAME), metadata={"format": "pt"})
    config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir / "tokenizer")
    image_processor.save_pretrained(out_dir / "image_processor")
    manifest = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "tinyllava_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "stage": stage,
        "weights": WEIGHTS_NAME,
        "components": components,
        "plugins": plugin_versions(registry, components),
        "image_preprocess": config.image_preprocess,
        "image_seq_len": config.image_seq_len,
        "max_length": config.model_max_length,
        "spec": spec,
    }
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return out_dir
