"""Torch modules of the mlp connector (imported only when a model is built)."""

from __future__ import annotations

import math

import torch
from torch import nn

# as large as the projected features from the start, so positions are told apart at once
POSITION_INIT_STD = 0.5


class WithPositions(nn.Module):
    """The MLP's output plus a learned vector per image-token position."""

    def __init__(self, mlp: nn.Module, num_tokens: int, dim: int) -> None:
        super().__init__()
        self.mlp = mlp
        self.position = nn.Parameter(torch.randn(1, num_tokens, dim) * POSITION_INIT_STD)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        check_token_count(features, self.position.shape[1])
        return self.mlp(features) + self.position.to(features.dtype)


class WithGridPositions(nn.Module):
    """The MLP's output plus a learned row vector and a learned column vector.

    A token's position is its row's vector plus its column's, so "top left" is "top" + "left": a question that
    names a place in two words can match each word to one half, where a flat table per token gives the
    model sixteen unrelated vectors to tell apart. Tokens are taken row by row, as vision towers emit them.
    """

    def __init__(self, mlp: nn.Module, num_tokens: int, dim: int) -> None:
        super().__init__()
        side = math.isqrt(num_tokens)
        if side * side != num_tokens:
            raise ValueError(
                f"mlp connector: position_embedding 'grid' needs a square grid of image tokens, but the vision "
                f"tower gives {num_tokens} (feature_strategy cls_patch adds a class token to the grid); use "
                f"feature_strategy: patch, or position_embedding: flat"
            )
        self.mlp = mlp
        self.rows = nn.Parameter(torch.randn(side, 1, dim) * POSITION_INIT_STD)
        self.columns = nn.Parameter(torch.randn(1, side, dim) * POSITION_INIT_STD)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        side = self.rows.shape[0]
        check_token_count(features, side * side)
        grid = (self.rows + self.columns).reshape(1, side * side, -1)
        return self.mlp(features) + grid.to(features.dtype)


def check_token_count(features: torch.Tensor, expected: int) -> None:
    if features.shape[1] != expected:
        raise ValueError(f"the connector was built for {expected} image tokens but got {features.shape[1]}")
