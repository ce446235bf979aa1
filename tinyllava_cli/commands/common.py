"""Small helpers shared by the sub-commands: consoles, error printing, loading a checkpoint for inference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> int:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return code


def check_placement(device: str, dtype: str) -> str | None:
    """The error message for a misspelt --device/--dtype (checked before anything heavy is imported), or None."""
    from tinyllava.inference.device import DeviceError, check_device_name, check_dtype_name

    try:
        check_device_name(device)
        check_dtype_name(dtype)
    except DeviceError as exc:
        return str(exc)
    return None


def load_pipeline(model: Path, device: str, dtype: str) -> tuple[Any, str | None]:
    """(pipeline, None) or (None, the error message): --device/--dtype resolved on this machine, then loaded."""
    from tinyllava.checkpoint.load import CheckpointError
    from tinyllava.inference import Pipeline
    from tinyllava.inference.device import DeviceError, resolve

    try:
        torch_device, torch_dtype = resolve(device, dtype)
    except DeviceError as exc:
        return None, str(exc)
    try:
        return Pipeline.from_checkpoint(model, device=torch_device, dtype=torch_dtype), None
    except (CheckpointError, FileNotFoundError) as exc:
        return None, str(exc)
