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


def checkpoint_problem(model: Path) -> str | None:
    """Why `model` is not a checkpoint folder, with the checkpoints found near it; None when it is one.

    Only looks at files (no torch), so a mistyped path is answered at once.
    """
    from tinyllava.constants import MANIFEST_NAME

    path = Path(model)
    if (path / MANIFEST_NAME).is_file():
        return None
    if not path.exists():
        message = f"{path} does not exist"
    elif not path.is_dir():
        message = f"{path} is a file; give the checkpoint's folder"
    else:
        message = f"{path} is not a tinyllava checkpoint (it has no {MANIFEST_NAME})"
    found = nearby_checkpoints(path)
    if found:
        message += "; checkpoints found: " + ", ".join(str(p) for p in found)
    elif not path.exists():
        message += "; a training run's last checkpoint is runs/<name>/latest"
    return message


def nearby_checkpoints(path: Path, limit: int = 5) -> list[Path]:
    """Checkpoints below `path` (or below its nearest existing parent): each run's `latest`, then stages' `final`."""
    from tinyllava.constants import MANIFEST_NAME

    base = path
    for _ in range(2):
        if base.is_dir():
            break
        base = base.parent
    if not base.is_dir():
        return []
    found: list[Path] = []
    for pattern in ("latest", "*/latest", "*/*/latest", "final", "*/final", "*/*/final", "*/*/*/final"):
        for candidate in sorted(base.glob(pattern)):
            if (candidate / MANIFEST_NAME).is_file() and candidate.resolve() not in {p.resolve() for p in found}:
                found.append(candidate)
    return found[:limit]


def image_problem(path: Path) -> str | None:
    """Why an image file cannot be used (missing, not an image, truncated), or None. Decodes it fully."""
    from PIL import Image

    if not Path(path).is_file():
        return f"image {path} does not exist"
    try:
        with Image.open(path) as img:
            img.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"image {path} cannot be read ({type(exc).__name__}: {exc})"
    return None


def check_placement(device: str, dtype: str) -> str | None:
    """The error message for a misspelt --device/--dtype (checked before anything heavy is imported), or None."""
    from tinyllava.inference.device import DeviceError, check_device_name, check_dtype_name

    try:
        check_device_name(device)
        check_dtype_name(dtype)
    except DeviceError as exc:
        return str(exc)
    return None


def early_problem(model: Path, device: str, dtype: str) -> str | None:
    """What is wrong with --device/--dtype or the model path, found before torch is imported, or None."""
    return check_placement(device, dtype) or checkpoint_problem(model)


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
