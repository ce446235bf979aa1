"""The Perceiver resampler modules (torch imported here, so only `build` imports this module)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PerceiverAttention(nn.Module):
    """Latents attend to the image and to themselves: keys/values come from concat(media, latents)."""

    def __init__(self, dim: int, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        inner = num_heads * head_dim
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, H * Dh) -> (B, H, L, Dh)."""
        b, length, _ = x.shape
        return x.view(b, length, self.num_heads, -1).transpose(1, 2)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        media = self.norm_media(media)
        latents = self.norm_latents(latents)
        q = self._heads(self.to_q(latents))
        k, v = self.to_kv(torch.cat([media, latents], dim=1)).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(q, self._heads(k), self._heads(v))
        b, _, length, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, length, -1))


class FeedForward(nn.Sequential):
    """Pre-norm MLP; its output is added back by the resampler (residual)."""

    def __init__(self, dim: int, mult: int) -> None:
        super().__init__(
            nn.LayerNorm(dim),
            nn.Linear(dim, mult * dim, bias=False),
            nn.GELU(),
            nn.Linear(mult * dim, dim, bias=False),
        )


class PerceiverResampler(nn.Module):
    """(B, N, D_vision) -> (B, num_queries, D_llm): project, then `depth` x [attention, feed-forward]."""

    def __init__(
        self,
        vision_dim: int,
        llm_dim: int,
        *,
        num_queries: int,
        depth: int,
        num_heads: int,
        head_dim: int,
        ff_mult: int,
    ) -> None:
        super().__init__()
        self.proj = nn.Linear(vision_dim, llm_dim)
        self.latents = nn.Parameter(torch.randn(num_queries, llm_dim))
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(llm_dim, num_heads, head_dim), FeedForward(llm_dim, ff_mult)])
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(llm_dim)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        media = self.proj(image_features.to(self.proj.weight.dtype))
        latents = self.latents.unsqueeze(0).expand(media.shape[0], -1, -1)
        for attention, feed_forward in self.layers:
            latents = attention(media, latents) + latents
            latents = feed_forward(latents) + latents
        return self.norm(latents)
