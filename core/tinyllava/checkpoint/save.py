"""Write a checkpoint directory that loads offline with nothing but the plugins it names.

Two layouts, chosen by the stage's `save_format` (never by a path name):

- full: `model.safetensors` holds every weight; adapters trained in the stage are merged in.
- adapters: `model.safetensors` holds the base weights (quantised layers stored dequantised) and each
  adapted component has a PEFT adapter in `adapters/<component>/`; the manifest lists them.

Both are written into a hidden sibling and renamed into place (checkpoint.atomic), so a run killed while saving
leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from tinyllava import __version__
from tinyllava.checkpoint.atomic import atomic_dir
from tinyllava.checkpoint.load import CheckpointError
from tinyllava.constants import CHECKPOINT_FORMAT_VERSION, MANIFEST_NAME

WEIGHTS_NAME = "model.safetensors"
SAVE_FORMATS = ("full", "adapters")
# what a checkpoint directory may hold: an existing one with only these is replaced, anything else is refused
CHECKPOINT_ENTRIES = {MANIFEST_NAME, WEIGHTS_NAME, "config.json", "tokenizer", "image_processor", "adapters",
                      "README.md"}


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
    previous: str = "",
) -> Path:
    """Write the checkpoint atomically (see checkpoint.atomic): `out_dir` is either untouched or complete.

    `state_dict` (default: the model's own) is how ZeRO-3 passes gathered weights; `previous` names the last
    complete checkpoint for the message when the write fails (disk full).
    """
    from safetensors.torch import save_file

    from tinyllava.checkpoint.adapters import split_state_dict, write_adapters
    from tinyllava.plugins.registry import get_registry

    if save_format not in SAVE_FORMATS:
        raise ValueError(f"save_format {save_format!r} is unknown; use one of {', '.join(SAVE_FORMATS)}")
    registry = registry or get_registry()
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    with atomic_dir(out_dir, previous=previous) as staging:
        config = model.config
        components = dict(config.components)
        components["chat_template"] = chat_template
        base, adapter_states = split_state_dict(model, state_dict)
        entries = write_adapters(model, adapter_states, staging) if adapter_states else {}
        save_file({k: v.detach().cpu().contiguous() for k, v in base.items()}, str(staging / WEIGHTS_NAME),
                  metadata={"format": "pt"})
        config.save_pretrained(staging)
        tokenizer.save_pretrained(staging / "tokenizer")
        image_processor.save_pretrained(staging / "image_processor")
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
        write_manifest(staging, manifest)
        if entries and save_format == "full":
            _merge_in_place(staging, registry)
        follow_umask(staging)
    return out_dir


def follow_umask(folder: Path) -> None:
    """safetensors creates its files 0600; give them the mode every other file gets (0666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    for path in Path(folder).rglob("*.safetensors"):
        os.chmod(path, 0o666 & ~mask)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """The manifest is written last: inside the staging directory, its presence marks a complete write."""
    (Path(folder) / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))


def _check_replaceable(out_dir: Path) -> None:
    """Replacing a directory replaces it whole: refuse one that holds anything but a checkpoint's files."""
    if not out_dir.is_dir():
        if out_dir.exists():
            raise CheckpointError(f"{out_dir} is a file; give a directory for the checkpoint")
        return
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in CHECKPOINT_ENTRIES)
    if foreign:
        raise CheckpointError(f"{out_dir} holds other files ({', '.join(foreign[:3])}); a checkpoint replaces its "
                              f"directory as a whole, so choose a new or empty directory")


def _merge_in_place(staging: Path, registry: Any) -> None:
    """Turn a just-written adapters layout into the full layout (the adapters merged into the weights)."""
    from tinyllava.checkpoint.merge import merge_checkpoint

    merged_dir = staging.with_name(staging.name + ".merged")
    shutil.rmtree(merged_dir, ignore_errors=True)
    try:
        merge_checkpoint(staging, merged_dir, registry=registry)
        merged = json.loads((merged_dir / MANIFEST_NAME).read_text())
        merged.pop("merged_from", None)  # merged where it was trained: no separate source
        write_manifest(merged_dir, merged)
        shutil.rmtree(staging)
        os.replace(merged_dir, staging)
    finally:
        shutil.rmtree(merged_dir, ignore_errors=True)
