"""The SigLIP2 NaFlex encoder wrapper (imports torch; loaded only when a tower is built)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tinyllava.model.vision import HFVisionEncoder


class Siglip2Encoder(HFVisionEncoder):
    """Feeds (B, 3, H, W) pixels to the NaFlex model, which wants patch rows plus their grid shape.

    The patch layout matches transformers' SigLIP2 processor (row-major patches, each flattened as
    (patch_row, patch_col, channel)); every patch is real, so the attention mask is all ones.
    """

    def __init__(self, model: nn.Module, *, patch_size: int, **kwargs: Any) -> None:
        super().__init__(model, has_cls=False, **kwargs)
        self.patch_size = patch_size

    def patchify(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> patches (B, h*w, p*p*C) and spatial shapes (B, 2) = (h, w) per image."""
        batch, channels, height, width = pixel_values.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"siglip2 input {height}x{width} is not a multiple of patch_size {p}")
        rows, cols = height // p, width // p
        patches = (
            pixel_values.reshape(batch, channels, rows, p, cols, p)
            .permute(0, 2, 4, 3, 5, 1)
            .reshape(batch, rows * cols, p * p * channels)
        )
        shapes = torch.tensor([rows, cols], device=pixel_values.device).expand(batch, 2)
        return patches, shapes

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        patches, shapes = self.patchify(pixel_values)
        mask = torch.ones(patches.shape[:2], dtype=torch.long, device=patches.device)
        out = self.model(
            pixel_values=patches.to(dtype),
            pixel_attention_mask=mask,
            spatial_shapes=shapes,
            output_hidden_states=True,
        )
        feats = out.hidden_states[self.feature_index]
        if self.final_norm_path:
            feats = self.model.get_submodule(self.final_norm_path)(feats)
        return feats
