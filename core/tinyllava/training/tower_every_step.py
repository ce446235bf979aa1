"""Run the vision tower on every step, text-only batches included, for DeepSpeed ZeRO-3 on mixed data.

Under ZeRO-3 each rank holds a slice of every weight and gathers a module's weights from all ranks when it runs
the module: a collective, so every rank must run the same modules in the same order. A rank whose batch is
text-only would skip the tower's gathers while the others wait for it forever. Here a text-only batch runs the
tower and the connector on a dummy image, right where an image batch runs them (after the token embeddings), and
adds their output multiplied by zero: the same gathers on every rank, and the same loss and gradients as without
it (the tower and connector get exact zeros from that batch, which is what ZeRO-3 gives a weight without a
gradient anyway).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tinyllava.constants import IMAGE_TOKEN_INDEX


@contextmanager
def tower_every_step(model: Any, dummy_pixels: Any) -> Iterator[None]:
    """Within the block, `model.embed` runs the tower on `dummy_pixels` (one image) when a batch has none."""
    original = model.embed

    def embed(input_ids: Any, pixel_values: Any = None, image_features: Any = None) -> Any:
        embeds = original(input_ids, pixel_values, image_features)
        if bool((input_ids == IMAGE_TOKEN_INDEX).any()):
            return embeds
        features = model.encode_images(dummy_pixels.to(embeds.device))
        return embeds + features.sum().to(embeds.dtype) * 0.0

    model.embed = embed
    try:
        yield
    finally:
        del model.embed  # the class's method again
