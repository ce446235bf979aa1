"""`tinyllava import`: another toolkit's checkpoint in, a normal tinyllava checkpoint out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinyllava.interop.import_common import ImportFailed

FORMATS = ("tinyllava-factory", "hf-llava")


def import_checkpoint(
    source_format: str,
    src: Path,
    output: Path,
    *,
    tokenizer: Path | None = None,
    image_processor: Path | None = None,
    chat_template: str | None = None,
    registry: Any = None,
) -> Path:
    """Write `output` (a checkpoint any recipe can `init_from`); the manifest's `imported_from` says whence."""
    from tinyllava.interop.import_common import write_checkpoint
    from tinyllava.plugins.registry import get_registry

    registry = registry or get_registry()
    template = {"name": chat_template, "options": {}} if chat_template else None
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise ImportFailed(f"{output} already exists and is not empty; choose another --output or remove it")
    if source_format == "tinyllava-factory":
        from tinyllava.interop.import_factory import read_factory

        plan = read_factory(Path(src), tokenizer=tokenizer, image_processor=image_processor,
                            chat_template=template, registry=registry)
    elif source_format == "hf-llava":
        from tinyllava.interop.import_hf_llava import read_hf_llava

        if tokenizer or image_processor:
            raise ImportFailed("--tokenizer and --image-processor apply to --from tinyllava-factory; an HF LLaVA "
                               "checkpoint carries its own")
        plan = read_hf_llava(Path(src), chat_template=template, registry=registry)
    else:
        raise ImportFailed(f"unknown source format {source_format!r}; use one of {', '.join(FORMATS)}")
    return write_checkpoint(plan, output, registry=registry)
