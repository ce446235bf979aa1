"""Torch modules of the mlp connector (imported only when a model is built)."""

from __future__ import annotations

import torch
from torch import nn


class WithPositions(nn.Module):
    """The MLP's output plus a learned vector per image-token position."""

    def __init__(self, mlp: nn.Module, num_tokens: int, dim: int) -> None:
        super().__init__()
        self.mlp = mlp
        # as large as the projected features from the start, so positions are told apart at once
        self.position = nn.Parameter(torch.randn(1, num_tokens, dim) * 0.5)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[1] != self.position.shape[1]:
            raise ValueError(
                f"the connector was built for {self.position.shape[1]} image tokens but got {features.shape[1]}"
            )
        return self.mlp(features) + self.position.to(features.dtype)
