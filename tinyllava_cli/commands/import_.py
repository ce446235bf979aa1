"""`tinyllava import --from FORMAT SRC --output DIR`: a TinyLLaVA Factory or HF LLaVA checkpoint in."""

from __future__ import annotations

import time
from pathlib import Path

from tinyllava_cli.commands.common import console, fail


def import_model(source_format: str, src: Path, output: Path, tokenizer: Path | None, image_processor: Path | None,
                 chat_template: str | None) -> int:
    from tinyllava.interop.import_checkpoint import import_checkpoint
    from tinyllava.interop.import_common import ImportFailed

    start = time.perf_counter()
    try:
        out = import_checkpoint(source_format, src, output, tokenizer=tokenizer, image_processor=image_processor,
                                chat_template=chat_template)
    except (ImportFailed, LookupError) as exc:
        return fail(str(exc).strip("'\""))
    from tinyllava.checkpoint.load import read_manifest

    manifest = read_manifest(out)
    comps = manifest["components"]
    names = ", ".join(f"{kind} {comps[kind]['name']}" for kind in ("llm", "vision_tower", "connector",
                                                                    "chat_template"))
    console.print(f"imported {source_format} {src} -> {out} in {time.perf_counter() - start:.1f}s ({names})")
    for note in manifest["imported_from"]["notes"]:
        console.print(f"  note: {note}")
    return 0
