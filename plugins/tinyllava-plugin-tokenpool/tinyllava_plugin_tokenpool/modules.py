"""The pooling connector modules (torch imported here, so only `build` imports this module)."""

from __future__ import annotations

import torch
from torch import nn

from tinyllava_plugin_tokenpool.grid import grid_side


def space_to_depth(x: torch.Tensor, factor: int, connector: str = "pixel_shuffle") -> torch.Tensor:
    """(B, S*S, D) row-major patch grid -> (B, (S/f)^2, f*f*D).

    Output token (i, j) concatenates the inputs at rows i*f + di, columns j*f + dj, ordered by (di, dj).
    """
    b, n, d = x.shape
    g = grid_side(n, factor, connector) // factor
    x = x.reshape(b, g, factor, g, factor, d).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, g * g, factor * factor * d)


class PixelShuffleProjector(nn.Module):
    """(B, N, D_vision) -> (B, N / f^2, D_llm): space-to-depth, optional LayerNorm, then an MLP."""

    def __init__(self, vision_dim: int, llm_dim: int, *, factor: int, depth: int, layer_norm: bool) -> None:
        super().__init__()
        self.factor = factor
        in_dim = vision_dim * factor * factor
        self.norm = nn.LayerNorm(in_dim) if layer_norm else nn.Identity()
        layers: list[nn.Module] = [nn.Linear(in_dim, llm_dim)]
        for _ in range(depth - 1):
            layers += [nn.GELU(), nn.Linear(llm_dim, llm_dim)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        x = space_to_depth(image_features.to(self.mlp[0].weight.dtype), self.factor)
        return self.mlp(self.norm(x))


class LDPProjector(nn.Module):
    """(B, N, D_vision) -> (B, N / f^2, D_llm): MLP, stride-f pooling on the grid, optional PEG residual."""

    def __init__(self, vision_dim: int, llm_dim: int, *, factor: int, pool: str, peg: bool) -> None:
        super().__init__()
        self.factor = factor
        self.mlp = nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim))
        if pool == "conv":
            conv = nn.Conv2d(llm_dim, llm_dim, kernel_size=factor, stride=factor, groups=llm_dim)
            with torch.no_grad():  # start as an average over each block, so early training sees pooled features
                conv.weight.fill_(1.0 / (factor * factor))
                conv.bias.zero_()
            self.pool: nn.Module = conv
        else:
            self.pool = nn.AvgPool2d(kernel_size=factor, stride=factor)
        self.peg = nn.Conv2d(llm_dim, llm_dim, kernel_size=3, padding=1, groups=llm_dim) if peg else None

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        b, n, _ = image_features.shape
        side = grid_side(n, self.factor, "ldp")
        x = self.mlp(image_features.to(self.mlp[0].weight.dtype))
        x = x.transpose(1, 2).reshape(b, -1, side, side)
        x = self.pool(x)
        if self.peg is not None:
            x = x + self.peg(x)
        return x.flatten(2).transpose(1, 2)
