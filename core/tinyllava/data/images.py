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
    from tinyllava.data.fast_pixels import fast_pixels

    fast = fast_pixels(processor)
    pixels = fast(image) if fast is not None else None  # the same pixels, a third of the time (see fast_pixels)
    if pixels is not None:
        return pixels
    return processor(images=image, return_tensors="pt")["pixel_values"][0]


# images above this many pixels are never decoded (PIL's own bomb guard is twice its MAX_IMAGE_PIXELS); the data
# spec's `max_image_pixels` (default DEFAULT_MAX_PIXELS) refuses smaller ones per run
DECODE_LIMIT = 1 << 30
DEFAULT_MAX_PIXELS = 64_000_000


def to_rgb(img: Any) -> Any:
    """Any PIL image as 8-bit RGB, as a viewer shows it: EXIF orientation applied, the first frame of an animation,
    16-bit and float greyscale scaled to 8 bits (a plain convert would clip them to white), palettes and alpha
    resolved (transparent areas keep their colour values)."""
    from PIL import Image, ImageOps

    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    img = ImageOps.exif_transpose(img) or img
    if img.mode.startswith("I") or img.mode == "F":
        import numpy as np

        array = np.nan_to_num(np.asarray(img, dtype=np.float64))
        peak = float(array.max()) if array.size else 0.0
        if img.mode.startswith("I;16"):
            top = 65535.0
        elif img.mode == "F" and peak <= 1.0:
            top = 1.0  # float images in [0, 1]
        else:  # 32-bit integers or floats: 8-, 16-bit ranges as such, anything else scaled to its maximum
            top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
        img = Image.fromarray(np.clip(array / top * 255.0, 0, 255).round().astype(np.uint8), mode="L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def open_image(path: Any) -> Any:
    """A file (path or binary file object) or a PIL image as 8-bit RGB; see to_rgb."""
    from PIL import Image

    if hasattr(path, "convert"):
        return to_rgb(path)
    with Image.open(path) as img:
        img.load()
        return to_rgb(img)
