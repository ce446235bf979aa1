"""The DINOv2 encoder wrapper (imports torch; loaded only when a tower is built)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tinyllava.model.vision import HFVisionEncoder


class Dinov2Encoder(HFVisionEncoder):
    """DINOv2 sequences are [CLS, registers..., patches]; the strategy decides which of them are image tokens.

    `patch`: patches only; `cls_patch`: CLS + patches (register tokens are neither, so they go);
    `full`: the whole sequence. Without registers this is exactly the CLIP-style selection.
    """

    def __init__(self, model: nn.Module, *, num_registers: int, **kwargs: Any) -> None:
        super().__init__(model, has_cls=True, **kwargs)
        self.num_registers = num_registers
        if self.strategy == "full":
            self.num_tokens += num_registers

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        out = self.model(pixel_values=pixel_values.to(dtype), output_hidden_states=True)
        feats = out.hidden_states[self.feature_index]
        if self.final_norm_path:
            feats = self.model.get_submodule(self.final_norm_path)(feats)
        if self.strategy == "full":
            return feats
        patches = feats[:, 1 + self.num_registers :]
        if self.strategy == "patch":
            return patches
        return torch.cat([feats[:, :1], patches], dim=1)
