"""transformers' PIL image-processor pipeline (resize, centre crop, rescale, normalise) without its overhead.

A CLIP-style processor spends about two thirds of its 3 ms per image on conversions and bookkeeping around the
one real operation, PIL's resize: on the reference workload that was 10% of a pretrain step and of batched
inference. Here the same steps run as PIL's resize and crop, then one rescale-and-normalise pass in torch with the
processor's own arithmetic (rescale in float64, cast to float32, subtract the mean and divide by the std in
float32), so the pixels are the processor's to the last bit.

Only a processor that runs transformers' stock PIL pipeline (`PilBackend._preprocess` with its own resize, crop,
rescale and normalise, no padding) gets the fast path, and only after it reproduced the processor exactly on a few
probe images of other shapes; anything else, and any image the fast path cannot handle (a crop larger than the
resized image), goes through the processor itself.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

_STEPS = ("_preprocess", "resize", "center_crop", "rescale", "normalize")
_PROBE_SIZES = ((53, 37), (320, 240), (224, 224), (97, 301))  # (width, height)
_CHECKED: dict[int, tuple[weakref.ref, Callable[[Any], Any] | None]] = {}


def fast_pixels(processor: Any) -> Callable[[Any], Any] | None:
    """A function RGB PIL image -> (3, H, W) float32 tensor equal to `processor(images=image)`'s, or None when
    the processor is not one this module reproduces. Checked once per processor object."""
    key = id(processor)
    known = _CHECKED.get(key)
    if known is not None and known[0]() is processor:
        return known[1]
    fn = _build(processor)
    if fn is not None and not _reproduces(processor, fn):
        fn = None
    try:
        ref = weakref.ref(processor)
    except TypeError:
        return fn
    _CHECKED[key] = (ref, fn)
    return fn


def _get(mapping: Any, key: str) -> Any:
    if mapping is None:
        return None
    if isinstance(mapping, dict):
        return mapping.get(key)
    return getattr(mapping, key, None)


def _stock_pipeline(processor: Any) -> bool:
    try:
        from transformers.image_processing_backends import PilBackend
    except ImportError:
        return False
    if not isinstance(processor, PilBackend):
        return False
    return all(getattr(type(processor), name, None) is getattr(PilBackend, name, None) for name in _STEPS)


def _build(processor: Any) -> Callable[[Any], Any] | None:
    import torch

    if not _stock_pipeline(processor) or getattr(processor, "do_pad", False):
        return None
    size, crop = getattr(processor, "size", None), getattr(processor, "crop_size", None)
    do_resize = bool(getattr(processor, "do_resize", False))
    shortest, height, width = _get(size, "shortest_edge"), _get(size, "height"), _get(size, "width")
    if do_resize and (_get(size, "longest_edge") or _get(size, "max_height") or not (shortest or (height and width))):
        return None
    do_crop = bool(getattr(processor, "do_center_crop", False))
    crop_h, crop_w = _get(crop, "height"), _get(crop, "width")
    if do_crop and not (crop_h and crop_w):
        return None
    resample = getattr(processor, "resample", None)
    resample = 2 if resample is None else int(resample)  # PIL's BILINEAR, the backend's default
    scale = float(processor.rescale_factor) if getattr(processor, "do_rescale", False) else None
    mean = std = None
    if getattr(processor, "do_normalize", False):
        mean = torch.tensor(processor.image_mean, dtype=torch.float32).reshape(-1, 1, 1)
        std = torch.tensor(processor.image_std, dtype=torch.float32).reshape(-1, 1, 1)
        if mean.numel() not in (1, 3) or std.numel() not in (1, 3):
            return None

    def pixels(image: Any) -> Any:
        import numpy as np

        if do_resize:
            w, h = image.size
            if shortest:  # transformers' get_resize_output_image_size(default_to_square=False)
                short, long = (w, h) if w <= h else (h, w)
                new_short, new_long = int(shortest), int(int(shortest) * long / short)
                new_h, new_w = (new_long, new_short) if w <= h else (new_short, new_long)
            else:
                new_h, new_w = int(height), int(width)
            image = image.resize((new_w, new_h), resample=resample)
        if do_crop:
            w, h = image.size
            top, left = (h - int(crop_h)) // 2, (w - int(crop_w)) // 2
            if top < 0 or left < 0:
                return None  # the processor pads: let it
            image = image.crop((left, top, left + int(crop_w), top + int(crop_h)))
        out = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
        out = out.to(torch.float64).mul_(scale).to(torch.float32) if scale is not None else out.to(torch.float32)
        if mean is not None:
            out = out.sub_(mean).div_(std)
        return out.contiguous()

    return pixels


def _reproduces(processor: Any, fn: Callable[[Any], Any]) -> bool:
    import numpy as np
    import torch
    from PIL import Image

    rng = np.random.default_rng(0)
    for w, h in _PROBE_SIZES:
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mode="RGB")
        fast = fn(image)
        if fast is None:
            continue
        reference = processor(images=image, return_tensors="pt")["pixel_values"][0]
        if fast.shape != reference.shape or not torch.equal(fast, reference.to(fast.dtype)):
            return False
    return True
