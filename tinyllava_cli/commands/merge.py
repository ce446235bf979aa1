"""`tinyllava merge --model DIR --output DIR`: fold a checkpoint's LoRA adapters into full weights."""

from __future__ import annotations

from pathlib import Path

from tinyllava_cli.commands.common import console, fail


def merge(model: Path, output: Path) -> int:
    from tinyllava.checkpoint import merge_checkpoint
    from tinyllava.checkpoint.load import CheckpointError

    if output.resolve() == model.resolve():
        return fail(f"--output {output} is the input checkpoint; write the merged model to another directory")
    if output.exists() and any(output.iterdir()):
        return fail(f"--output {output} is not empty; choose a new directory")
    try:
        merged = merge_checkpoint(model, output)
    except CheckpointError as exc:
        return fail(str(exc))
    if merged:
        console.print(f"merged the {', '.join(merged)} adapter(s) of {model} into full weights")
    else:
        console.print(f"{model} holds no adapters; wrote it as a full checkpoint")
    console.print(f"checkpoint: {output}")
    return 0
