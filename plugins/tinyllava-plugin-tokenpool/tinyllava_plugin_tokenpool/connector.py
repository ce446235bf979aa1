"""Connectors that shrink the image to N / factor^2 tokens: options and build (torch only inside build)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tinyllava.components.base import ComponentOptions
from tinyllava.components.connector import Connector
from tinyllava_plugin_tokenpool.grid import grid_side

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


class PixelShuffleConnector(Connector):
    """Space-to-depth: each factor x factor block of patches becomes one token (features concatenated), then an MLP.

    Nothing is averaged away: a block's features all reach the MLP, only the token count drops.
    """

    class Options(ComponentOptions):
        factor: int = Field(2, ge=1, le=16, description="block side; tokens drop by factor^2")
        depth: int = Field(2, ge=1, le=8, description="Linear layers of the MLP (GELU between them)")
        layer_norm: bool = Field(False, description="LayerNorm over the concatenated block before the MLP")

    def hf_llava_export(self, module: Any) -> Any:
        from tinyllava.interop.export_contract import refuse

        refuse(self, "it merges blocks of neighbouring patches into one token; LLaVA's projector keeps one "
                     'token per patch')

    def build(self, vision_dim: int, llm_dim: int, num_vision_tokens: int) -> nn.Module:
        from tinyllava_plugin_tokenpool.modules import PixelShuffleProjector

        grid_side(num_vision_tokens, self.options.factor, self.name or "pixel_shuffle")
        o = self.options
        return PixelShuffleProjector(vision_dim, llm_dim, factor=o.factor, depth=o.depth, layer_norm=o.layer_norm)


class LDPConnector(Connector):
    """LDP-style (MobileVLM): an MLP per token, then a stride-`factor` pooling on the patch grid.

    `pool: conv` is a depthwise convolution that starts as an average and learns from there;
    `pool: avg` is a fixed average. `peg` adds a depthwise 3x3 convolution as a residual, which gives
    the pooled tokens back some knowledge of their neighbourhood.
    """

    class Options(ComponentOptions):
        factor: int = Field(2, ge=1, le=16, description="pooling window and stride; tokens drop by factor^2")
        pool: Literal["conv", "avg"] = Field("conv", description="learned depthwise conv or fixed average")
        peg: bool = Field(True, description="residual depthwise 3x3 conv after pooling (positional encoding)")

    def hf_llava_export(self, module: Any) -> Any:
        from tinyllava.interop.export_contract import refuse

        refuse(self, "it pools the patch grid (and adds a convolution); LLaVA's projector keeps one token per "
                     'patch and has no convolution')

    def build(self, vision_dim: int, llm_dim: int, num_vision_tokens: int) -> nn.Module:
        from tinyllava_plugin_tokenpool.modules import LDPProjector

        grid_side(num_vision_tokens, self.options.factor, self.name or "ldp")
        o = self.options
        return LDPProjector(vision_dim, llm_dim, factor=o.factor, pool=o.pool, peg=o.peg)
