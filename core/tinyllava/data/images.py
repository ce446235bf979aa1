"""Image preprocessing modes, recorded in the checkpoint and reused at inference."""

from __future__ import annotations

from typing import Any


def expand_to_square(image: Any, fill: tuple[int, int, int]) -> Any:
    from PIL import Image

    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def preprocess_image(image: Any, processor: Any, mode: str) -> Any:
    """PIL image -> (3, H, W) float tensor. `pad` letterboxes with the processor's mean colour first.

    The fill is `int(mean * 255)` (truncated, not rounded), as TinyLLaVA Factory's `expand2square` and
    transformers' `LlavaImageProcessor` compute it, so imported and exported models see the same pixels.
    """
    image = image.convert("RGB")
    if mode == "pad":
        mean = getattr(processor, "image_mean", None) or [0.5, 0.5, 0.5]
        image = expand_to_square(image, tuple(int(m * 255) for m in mean))
    elif mode != "square":
        raise ValueError(f"unknown image_preprocess {mode!r}; use 'square' or 'pad'")
    return processor(images=image, return_tensors="pt")["pixel_values"][0]


def open_image(path: Any) -> Any:
    from PIL import Image

    if hasattr(path, "convert"):
        return path
    with Image.open(path) as img:
        return img.convert("RGB")
