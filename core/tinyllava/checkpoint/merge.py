"""Fold a checkpoint's adapters into full weights: the result is an ordinary full checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def merge_checkpoint(source: Path, output: Path, registry: Any = None) -> list[str]:
    """Write `output` with every adapter of `source` merged in; returns the merged components."""
    from tinyllava.checkpoint.load import load_checkpoint, read_manifest
    from tinyllava.checkpoint.save import save_checkpoint

    manifest = read_manifest(Path(source))
    loaded = load_checkpoint(source, registry=registry, merge_adapters=True)
    merged = sorted(manifest.get("adapters") or {})
    save_checkpoint(
        output, loaded.model, loaded.tokenizer, loaded.image_processor,
        chat_template=manifest["components"]["chat_template"], spec=manifest.get("spec"),
        stage=manifest.get("stage"), registry=registry, save_format="full",
        extra_manifest={"merged_from": str(Path(source).resolve()), "merged_adapters": merged},
    )
    return merged
