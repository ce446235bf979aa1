"""The MoF torch modules (imported only when a tower or connector is built)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def interleave(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(B, N, D) twice -> (B, 2N, D) ordered first0, second0, first1, second1, ..."""
    return torch.stack((first, second), dim=2).flatten(1, 2)


class MoFVisionConfig:
    """Both sub-configs under one `to_dict()`, so a checkpoint rebuilds both towers."""

    model_type = "tinyllava_mof"

    def __init__(self, clip: Any, dinov2: Any) -> None:
        self.clip = clip
        self.dinov2 = dinov2
        self.hidden_size = int(clip.hidden_size)

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": self.model_type, "clip": self.clip.to_dict(), "dinov2": self.dinov2.to_dict()}


class MoFEncoder(nn.Module):
    """CLIP and DINOv2 features of the same pixels, interleaved token-wise: (B, 2N, D)."""

    def __init__(
        self, clip: nn.Module, dinov2: nn.Module, clip_pixel_stats: tuple[Any, Any] | None = None
    ) -> None:
        super().__init__()
        if clip.hidden_size != dinov2.hidden_size:
            raise ValueError(
                f"mof needs towers of the same width: clip has {clip.hidden_size}, "
                f"dinov2 {dinov2.hidden_size} (e.g. clip-vit-large with dinov2-large, both 1024)"
            )
        if clip.num_tokens != dinov2.num_tokens:
            raise ValueError(
                f"mof interleaves the two towers token by token, but clip gives {clip.num_tokens} tokens and "
                f"dinov2 {dinov2.num_tokens} for the same pixels; use the same patch size (e.g. 14 for both)"
            )
        self.clip = clip
        self.dinov2 = dinov2
        self.hidden_size = int(clip.hidden_size)
        self.num_tokens = 2 * int(clip.num_tokens)
        self.renormalize = clip_pixel_stats is not None
        if clip_pixel_stats is not None:
            mean, std = clip_pixel_stats
            # x_dino = (x * std_clip + mean_clip - mean_in) / std_in, as one scale and shift per channel
            scale = torch.tensor(std) / torch.tensor(IMAGENET_STD)
            shift = (torch.tensor(mean) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
            self.register_buffer("dino_scale", scale.view(1, 3, 1, 1), persistent=False)
            self.register_buffer("dino_shift", shift.view(1, 3, 1, 1), persistent=False)

    @property
    def config(self) -> MoFVisionConfig:
        return MoFVisionConfig(self.clip.config, self.dinov2.config)

    def dinov2_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The original feeds DINOv2 CLIP-normalised pixels; `renormalize_dinov2` uses DINOv2's statistics."""
        if not self.renormalize:
            return pixel_values
        return pixel_values * self.dino_scale.to(pixel_values.dtype) + self.dino_shift.to(pixel_values.dtype)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return interleave(self.clip(pixel_values), self.dinov2(self.dinov2_pixels(pixel_values)))


def mlp(in_dim: int, out_dim: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)


class MoFMLP(nn.Module):
    """De-interleave, project each tower's tokens with its own MLP, re-interleave.

    Submodules `clip` and `dinov2` (keys clip.0/clip.2, dinov2.0/dinov2.2 at depth 2) match TinyLLaVA
    Factory's MoFMLPConnector, so its weights map one to one.
    """

    def __init__(self, vision_dim: int, llm_dim: int, depth: int) -> None:
        super().__init__()
        self.clip = mlp(vision_dim, llm_dim, depth)
        self.dinov2 = mlp(vision_dim, llm_dim, depth)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[1] % 2:
            count = features.shape[1]
            raise ValueError(f"mof_mlp needs interleaved clip/dinov2 tokens (an even count), got {count}")
        return interleave(self.clip(features[:, 0::2]), self.dinov2(features[:, 1::2]))
