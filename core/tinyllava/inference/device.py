"""Where and in which precision a checkpoint runs: `--device auto|cpu|cuda[:N]`,
`--dtype auto|float32|bfloat16|float16`.

auto picks the first CUDA device in bfloat16 (float16 where the GPU has no bfloat16), else the CPU in float32.
The spellings are checked without importing torch, so a typo fails before anything heavy loads.
"""

from __future__ import annotations

import re
from typing import Any

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
_DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class DeviceError(ValueError):
    """The requested device or dtype cannot be used here; the message says why and what to pass instead."""


def check_device_name(name: str) -> str:
    """The normalised spelling, or DeviceError. No torch import."""
    text = name.strip().lower()
    if not _DEVICE_RE.match(text):
        raise DeviceError(f"--device {name!r} is not a device; use one of {', '.join(DEVICE_CHOICES)} "
                          f"(e.g. cuda:1 for the second GPU)")
    return text


def check_dtype_name(name: str) -> str:
    text = name.strip().lower()
    text = _DTYPE_ALIASES.get(text, text)
    if text not in DTYPE_CHOICES:
        raise DeviceError(f"--dtype {name!r} is not a dtype; use one of {', '.join(DTYPE_CHOICES)}")
    return text


def resolve_device(name: str = "auto") -> Any:
    """A torch.device that exists on this machine."""
    import torch

    text = check_device_name(name)
    if text == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        reason = ("this torch was built without CUDA" if torch.version.cuda is None
                  else "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)")
        raise DeviceError(f"--device {name} asks for a GPU but {reason}; use --device cpu (or auto)")
    device = torch.device(text)
    count = torch.cuda.device_count()
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index >= count:
        raise DeviceError(f"--device {name}: there {'is' if count == 1 else 'are'} only {count} CUDA device(s) "
                          f"(cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


def resolve_dtype(name: str, device: Any) -> Any:
    """The compute dtype for `device`; refuses a precision the device cannot run."""
    import torch

    text = check_dtype_name(name)
    if text == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[text]
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"--dtype bfloat16: {torch.cuda.get_device_name(device)} has no bfloat16 support; "
                          f"use --dtype float16 or float32")
    return dtype


def resolve(device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
    """(torch.device, torch.dtype) for the CLI's --device/--dtype."""
    resolved = resolve_device(device)
    return resolved, resolve_dtype(dtype, resolved)
